"""Plain-NumPy references for the built-in gates and activations, written from the equations.

Nothing here imports the engine: every formula below is taken from the published form of
its cell, so the kernels are checked against an independent reading of the maths, not
against a copy of their own code.

- lstm      PyTorch ``nn.LSTM`` (gates i, f, g, o)
- peephole  ONNX / Gers-Schmidhuber peepholes, ``P = [p_i, p_f, p_o]``: p_i and p_f act on
            c_{t-1}, p_o on c_t
- coupled   ONNX ``input_forget=1``: f = 1 - i, three blocks i, g, o
- gru       PyTorch ``nn.GRU`` (gates r, z, n), b_hn inside r * (W_hn h + b_hn)
- mingru    minGRU (Feng et al. 2024): h = (1 - z) h_{t-1} + z g(k_h), z = sigmoid(k_z), x only
- minlstm   minLSTM (Feng et al. 2024): h = f' h_{t-1} + i' g(k_h), f', i' = f, i over f + i
- indrnn    IndRNN (Li et al. 2018) as haste's IndRNN: h = act(W x + b + u * h_{t-1}), u per unit
            (``recurrent_scale``), no W_hh
- slstm     xLSTM's sLSTM (Beck et al. 2024, eqs. 8-17 with the stabiliser m; gates i, f, z,
            o; states h, c, n, m), log-sigmoid forget gate as in NX-AI's reference code; a
            state with n = 0 is empty (m = z_i, nothing is forgotten from it)

``act`` is the cell activation (Keras ``activation``, ONNX g and h) and ``ract`` the gate
activation (Keras ``recurrent_activation``, ONNX f). ``clip`` clamps every pre-activation
to [-clip, clip] before its activation (ONNX ``clip``); its derivative is 1 inside, 0 out.

Sequences are time-major, x (T, B, I). Row b is valid for its first ``lengths[b]`` steps
(PyTorch packed sequences): the forward direction reads t = 0..L-1, the reverse direction
t = L-1..0; outputs at padded steps are 0 and the final state is the one after the row's
last valid step. Per-step loops are deliberately simple; speed does not matter here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------- activations
# name -> (f(x, a, b), df/dx(x, a, b), default alpha, default beta); ONNX definitions.


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)) without overflow


ACTIVATIONS = {
    "sigmoid": (lambda x, a, b: _sigmoid(x),
                lambda x, a, b: _sigmoid(x) * (1.0 - _sigmoid(x)), 0.0, 0.0),
    "tanh": (lambda x, a, b: np.tanh(x),
             lambda x, a, b: 1.0 - np.tanh(x) ** 2, 0.0, 0.0),
    "hard_sigmoid": (lambda x, a, b: np.minimum(np.maximum(a * x + b, 0.0), 1.0),
                     lambda x, a, b: np.where((a * x + b > 0.0) & (a * x + b < 1.0), a, 0.0), 0.2, 0.5),
    "relu": (lambda x, a, b: np.maximum(x, 0.0),
             lambda x, a, b: np.where(x > 0.0, 1.0, 0.0), 0.0, 0.0),
    "leaky_relu": (lambda x, a, b: np.where(x >= 0.0, x, a * x),
                   lambda x, a, b: np.where(x >= 0.0, 1.0, a), 0.01, 0.0),
    "elu": (lambda x, a, b: np.where(x >= 0.0, x, a * np.expm1(np.minimum(x, 0.0))),
            lambda x, a, b: np.where(x >= 0.0, 1.0, a * np.exp(np.minimum(x, 0.0))), 1.0, 0.0),
    "softsign": (lambda x, a, b: x / (1.0 + np.abs(x)),
                 lambda x, a, b: 1.0 / (1.0 + np.abs(x)) ** 2, 0.0, 0.0),
    "softplus": (lambda x, a, b: np.logaddexp(0.0, x),
                 lambda x, a, b: _sigmoid(x), 0.0, 0.0),
    "scaled_tanh": (lambda x, a, b: a * np.tanh(b * x),
                    lambda x, a, b: a * b * (1.0 - np.tanh(b * x) ** 2), 1.0, 1.0),
}


class Act:
    """An activation bound to its alpha and beta: ``act(x)`` and ``act.grad(x)``."""

    def __init__(self, name: str, alpha=None, beta=None):
        f, df, a0, b0 = ACTIVATIONS[name]
        self.name = name
        self.alpha = a0 if alpha is None else float(alpha)
        self.beta = b0 if beta is None else float(beta)
        self._f, self._df = f, df

    def __call__(self, x):
        return self._f(np.asarray(x, dtype=np.float64), self.alpha, self.beta)

    def grad(self, x):
        return self._df(np.asarray(x, dtype=np.float64), self.alpha, self.beta) * np.ones_like(x, dtype=np.float64)


@dataclass
class Config:
    act: Act
    ract: Act
    clip: float = math.inf

    def clamp(self, z):
        return np.clip(z, -self.clip, self.clip)

    def clamp_grad(self, z):
        return (np.abs(z) <= self.clip).astype(np.float64)


def config(activation="tanh", recurrent_activation="sigmoid", activation_alpha=None, activation_beta=None,
           recurrent_activation_alpha=None, recurrent_activation_beta=None, clip=None) -> Config:
    """A :class:`Config` from the same keywords as ``ln.LSTM``."""
    return Config(Act(activation, activation_alpha, activation_beta),
                  Act(recurrent_activation, recurrent_activation_alpha, recurrent_activation_beta),
                  math.inf if clip is None else float(clip))


# --------------------------------------------------------------------------- cells
# Each cell works on a batch of rows: zx, zh (B, blocks*H) are the input and recurrent
# projections including their biases, state (S, B, H). ``forward`` returns the new state and
# a cache; ``backward`` maps dLoss/d(new state) to dLoss/dzx, dLoss/dzh, the direct part of
# dLoss/d(old state) (the part through zh is added by the driver) and dLoss/dp.


class LSTMCell:
    n_blocks, n_state, n_extra = 4, 2, 0

    def forward(self, zx, zh, state, p, cfg):
        h0, c0 = state
        zi, zf, zg, zo = np.split(zx + zh, 4, axis=1)
        i, f = cfg.ract(cfg.clamp(zi)), cfg.ract(cfg.clamp(zf))
        g, o = cfg.act(cfg.clamp(zg)), cfg.ract(cfg.clamp(zo))
        c = f * c0 + i * g
        h = o * cfg.act(c)
        return np.stack([h, c]), (zi, zf, zg, zo, i, f, g, o, c0, c)

    def backward(self, cache, dstate, p, cfg):
        zi, zf, zg, zo, i, f, g, o, c0, c = cache
        dh, dc_next = dstate
        do = dh * cfg.act(c)
        dc = dc_next + dh * o * cfg.act.grad(c)
        dzi = dc * g * cfg.ract.grad(cfg.clamp(zi)) * cfg.clamp_grad(zi)
        dzf = dc * c0 * cfg.ract.grad(cfg.clamp(zf)) * cfg.clamp_grad(zf)
        dzg = dc * i * cfg.act.grad(cfg.clamp(zg)) * cfg.clamp_grad(zg)
        dzo = do * cfg.ract.grad(cfg.clamp(zo)) * cfg.clamp_grad(zo)
        dz = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
        return dz, dz, np.stack([np.zeros_like(dh), dc * f]), np.zeros(0)


class PeepholeCell:
    """ONNX peepholes: i and f see c_{t-1}, o sees the new c_t. p = [p_i, p_f, p_o]."""

    n_blocks, n_state, n_extra = 4, 2, 3

    def forward(self, zx, zh, state, p, cfg):
        h0, c0 = state
        p_i, p_f, p_o = np.split(p, 3)
        ai, af, ag, ao = np.split(zx + zh, 4, axis=1)
        zi, zf = ai + p_i * c0, af + p_f * c0
        i, f, g = cfg.ract(cfg.clamp(zi)), cfg.ract(cfg.clamp(zf)), cfg.act(cfg.clamp(ag))
        c = f * c0 + i * g
        zo = ao + p_o * c
        o = cfg.ract(cfg.clamp(zo))
        h = o * cfg.act(c)
        return np.stack([h, c]), (zi, zf, ag, zo, i, f, g, o, c0, c)

    def backward(self, cache, dstate, p, cfg):
        zi, zf, zg, zo, i, f, g, o, c0, c = cache
        p_i, p_f, p_o = np.split(p, 3)
        dh, dc_next = dstate
        dzo = dh * cfg.act(c) * cfg.ract.grad(cfg.clamp(zo)) * cfg.clamp_grad(zo)
        dc = dc_next + dh * o * cfg.act.grad(c) + dzo * p_o      # c feeds h and zo
        dzi = dc * g * cfg.ract.grad(cfg.clamp(zi)) * cfg.clamp_grad(zi)
        dzf = dc * c0 * cfg.ract.grad(cfg.clamp(zf)) * cfg.clamp_grad(zf)
        dzg = dc * i * cfg.act.grad(cfg.clamp(zg)) * cfg.clamp_grad(zg)
        dc0 = dc * f + dzi * p_i + dzf * p_f                     # c0 feeds c, zi and zf
        dp = np.concatenate([(dzi * c0).sum(0), (dzf * c0).sum(0), (dzo * c).sum(0)])
        dz = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
        return dz, dz, np.stack([np.zeros_like(dh), dc0]), dp


class CoupledCell:
    """ONNX input_forget=1: f = 1 - i; blocks i, g, o."""

    n_blocks, n_state, n_extra = 3, 2, 0

    def forward(self, zx, zh, state, p, cfg):
        h0, c0 = state
        zi, zg, zo = np.split(zx + zh, 3, axis=1)
        i, g, o = cfg.ract(cfg.clamp(zi)), cfg.act(cfg.clamp(zg)), cfg.ract(cfg.clamp(zo))
        c = (1.0 - i) * c0 + i * g
        h = o * cfg.act(c)
        return np.stack([h, c]), (zi, zg, zo, i, g, o, c0, c)

    def backward(self, cache, dstate, p, cfg):
        zi, zg, zo, i, g, o, c0, c = cache
        dh, dc_next = dstate
        dc = dc_next + dh * o * cfg.act.grad(c)
        dzi = dc * (g - c0) * cfg.ract.grad(cfg.clamp(zi)) * cfg.clamp_grad(zi)
        dzg = dc * i * cfg.act.grad(cfg.clamp(zg)) * cfg.clamp_grad(zg)
        dzo = dh * cfg.act(c) * cfg.ract.grad(cfg.clamp(zo)) * cfg.clamp_grad(zo)
        dz = np.concatenate([dzi, dzg, dzo], axis=1)
        return dz, dz, np.stack([np.zeros_like(dh), dc * (1.0 - i)]), np.zeros(0)


class GRUCell:
    """PyTorch GRU: n = act(x_n + r * (W_hn h + b_hn)); h' = (1 - z) n + z h."""

    n_blocks, n_state, n_extra = 3, 1, 0

    def forward(self, zx, zh, state, p, cfg):
        (h0,) = state
        xr, xz, xn = np.split(zx, 3, axis=1)
        hr, hz, hn = np.split(zh, 3, axis=1)
        ar, az = xr + hr, xz + hz
        r, z = cfg.ract(cfg.clamp(ar)), cfg.ract(cfg.clamp(az))
        an = xn + r * hn
        n = cfg.act(cfg.clamp(an))
        h = (1.0 - z) * n + z * h0
        return h[None], (ar, az, an, hn, r, z, n, h0)

    def backward(self, cache, dstate, p, cfg):
        ar, az, an, hn, r, z, n, h0 = cache
        dh = dstate[0]
        dan = dh * (1.0 - z) * cfg.act.grad(cfg.clamp(an)) * cfg.clamp_grad(an)
        daz = dh * (h0 - n) * cfg.ract.grad(cfg.clamp(az)) * cfg.clamp_grad(az)
        dar = dan * hn * cfg.ract.grad(cfg.clamp(ar)) * cfg.clamp_grad(ar)
        dzx = np.concatenate([dar, daz, dan], axis=1)
        dzh = np.concatenate([dar, daz, dan * r], axis=1)
        return dzx, dzh, (dh * z)[None], np.zeros(0)


class SLSTMCell:
    """sLSTM: i = exp(z_i - m), f = exp(log sigmoid(z_f) + m0 - m), h = o * c / n."""

    n_blocks, n_state, n_extra = 4, 4, 0
    #: States that are positive in every state the cell reaches (n; 0 is the empty state).
    positive_states = (2,)

    def forward(self, zx, zh, state, p, cfg):
        h0, c0, n0, m0 = state
        zi, zf, zz, zo = np.split(zx + zh, 4, axis=1)
        ci, cf = cfg.clamp(zi), cfg.clamp(zf)
        log_f = -np.logaddexp(0.0, -cf)
        empty = n0 == 0.0
        m = np.where(empty, ci, np.maximum(ci, log_f + m0))
        i = np.exp(ci - m)
        with np.errstate(over="ignore"):
            f = np.where(empty, 0.0, np.exp(log_f + m0 - m))
        z, o = cfg.act(cfg.clamp(zz)), cfg.ract(cfg.clamp(zo))
        c = f * c0 + i * z
        n = f * n0 + i
        h = o * c / n
        return np.stack([h, c, n, m]), (zi, zf, zz, zo, ci, cf, log_f, empty, i, f, z, o, c0, n0, m0, c, n)

    def backward(self, cache, dstate, p, cfg):
        zi, zf, zz, zo, ci, cf, log_f, empty, i, f, z, o, c0, n0, m0, c, n = cache
        dh, dc_next, dn_next, dm_next = dstate
        # h = o c / n
        do = dh * c / n
        dc = dc_next + dh * o / n
        dn = dn_next - dh * o * c / n ** 2
        # c = f c0 + i z,  n = f n0 + i
        di, df, dz = dc * z + dn, dc * c0 + dn * n0, dc * i
        # i = exp(ci - m),  f = exp(log_f + m0 - m)  (f = 0, a constant, from an empty state)
        d_ci, d_log_f = di * i, df * f
        d_m0 = d_log_f
        dm = dm_next - d_ci - d_log_f
        # m = ci where it wins the max (or the state is empty), else log_f + m0
        wins = empty | (ci >= log_f + m0)
        d_ci = d_ci + np.where(wins, dm, 0.0)
        d_log_f = d_log_f + np.where(wins, 0.0, dm)
        d_m0 = d_m0 + np.where(wins, 0.0, dm)
        dzi = d_ci * cfg.clamp_grad(zi)
        dzf = d_log_f * (1.0 - _sigmoid(cf)) * cfg.clamp_grad(zf)
        dzz = dz * cfg.act.grad(cfg.clamp(zz)) * cfg.clamp_grad(zz)
        dzo = do * cfg.ract.grad(cfg.clamp(zo)) * cfg.clamp_grad(zo)
        dzx = np.concatenate([dzi, dzf, dzz, dzo], axis=1)
        return dzx, dzx, np.stack([np.zeros_like(dh), dc * f, dn * f, d_m0]), np.zeros(0)


class IndRNNCell:
    """IndRNN: h = act(zx + u * h0); zh is zero (no recurrent matrix), p = u."""

    n_blocks, n_state, n_extra = 1, 1, 1

    def forward(self, zx, zh, state, p, cfg):
        (h0,) = state
        z = zx + zh + p * h0
        return cfg.act(cfg.clamp(z))[None], (z, h0)

    def backward(self, cache, dstate, p, cfg):
        z, h0 = cache
        dz = dstate[0] * cfg.act.grad(cfg.clamp(z)) * cfg.clamp_grad(z)
        return dz, dz, (dz * p)[None], (dz * h0).sum(0)


def _g(x):
    """Feng et al. 2024's g: x + 1/2 for x >= 0, sigmoid(x) below; and dg/dx."""
    s = _sigmoid(x)
    return np.where(x >= 0, x + 0.5, s), np.where(x >= 0, 1.0, s * (1.0 - s))


class MinGRUCell:
    """minGRU (Feng et al. 2024, eq. of section 3.1): z = sigmoid(k_z), h~ = g(k_h),
    h = (1 - z) h0 + z h~; blocks z, h~; activations unused."""

    n_blocks, n_state, n_extra = 2, 1, 0

    def forward(self, zx, zh, state, p, cfg):
        (h0,) = state
        kz, kh = np.split(zx + zh, 2, axis=1)
        z, (cand, _) = _sigmoid(cfg.clamp(kz)), _g(cfg.clamp(kh))
        return ((1.0 - z) * h0 + z * cand)[None], (kz, kh, h0)

    def backward(self, cache, dstate, p, cfg):
        kz, kh, h0 = cache
        dh = dstate[0]
        z, (cand, dcand) = _sigmoid(cfg.clamp(kz)), _g(cfg.clamp(kh))
        dz = np.concatenate([dh * (cand - h0) * z * (1.0 - z) * cfg.clamp_grad(kz),
                             dh * z * dcand * cfg.clamp_grad(kh)], axis=1)
        return dz, dz, (dh * (1.0 - z))[None], np.zeros(0)


class MinLSTMCell:
    """minLSTM (Feng et al. 2024, section 3.2, with h~ = g(k_h) of its log-space version):
    f = sigmoid(k_f), i = sigmoid(k_i), f' = f / (f + i), i' = i / (f + i),
    h = f' h0 + i' h~; blocks f, i, h~."""

    n_blocks, n_state, n_extra = 3, 1, 0

    def forward(self, zx, zh, state, p, cfg):
        (h0,) = state
        kf, ki, kh = np.split(zx + zh, 3, axis=1)
        f, i, (cand, _) = _sigmoid(cfg.clamp(kf)), _sigmoid(cfg.clamp(ki)), _g(cfg.clamp(kh))
        return (f / (f + i) * h0 + i / (f + i) * cand)[None], (kf, ki, kh, h0)

    def backward(self, cache, dstate, p, cfg):
        kf, ki, kh, h0 = cache
        dh = dstate[0]
        f, i, (cand, dcand) = _sigmoid(cfg.clamp(kf)), _sigmoid(cfg.clamp(ki)), _g(cfg.clamp(kh))
        total = f + i
        # h = (f h0 + i h~) / (f + i): quotient rule in f and i
        df = dh * (h0 - cand) * i / total ** 2
        di = dh * (cand - h0) * f / total ** 2
        dz = np.concatenate([df * f * (1.0 - f) * cfg.clamp_grad(kf), di * i * (1.0 - i) * cfg.clamp_grad(ki),
                             dh * i / total * dcand * cfg.clamp_grad(kh)], axis=1)
        return dz, dz, (dh * f / total)[None], np.zeros(0)


CELLS = {"lstm": LSTMCell(), "peephole": PeepholeCell(), "coupled": CoupledCell(), "gru": GRUCell(),
         "slstm": SLSTMCell(), "indrnn": IndRNNCell(), "mingru": MinGRUCell(), "minlstm": MinLSTMCell()}

#: Name of each gate's extra parameter vector in the state_dict (None: no extra params).
EXTRA_PARAM = {"lstm": None, "peephole": "weight_peephole", "coupled": None, "gru": None, "slstm": None,
               "indrnn": "recurrent_scale", "mingru": None, "minlstm": None}


def random_state(gate, rng, shape):
    """0.5 * N(0, 1) initial states (S, ...); a reference cell's ``positive_states`` (sLSTM's
    normaliser n) are shifted to 0.5 + |N(0, 0.25)|. A gate with no reference cell here (a
    third-party plugin under test) gets the plain normal draw."""
    state = 0.5 * rng.normal(size=shape)
    for k in getattr(CELLS.get(gate), "positive_states", ()):
        state[k] = 0.5 + np.abs(state[k])
    return state


# --------------------------------------------------------------------------- drivers


def _recurrent_projection(h_prev, w_hh, b_hh, rdrop, rows):
    """h_{t-1} @ W_hh^T + b_hh, or with recurrent dropout (Keras: one mask per row and gate
    block for the whole sequence, ``rdrop`` (B, n_blocks, H)) block k's (h_{t-1} * m_k) @ W_hh_k^T."""
    if rdrop is None:
        return h_prev @ w_hh.T + b_hh
    blocks = np.split(w_hh, rdrop.shape[1], axis=0)
    return np.concatenate([(h_prev * rdrop[rows, k]) @ w.T for k, w in enumerate(blocks)], axis=1) + b_hh


def direction_forward(cell, x, w_ih, w_hh, b_ih, b_hh, p, state0, lengths, reverse, cfg, every=None, zone=None,
                      rdrop=None):
    """One direction over x (T, B, I) from state0 (S, B, H); returns y, final state, tape.

    ``every`` (S, T, B, H), if given, receives the state after each valid step at its time
    index (padded steps are left as they are). ``zone`` (T, B, S, H), in time order: zoneout,
    the state after step t is z * new + (1 - z) * previous with z = zone[t] (haste: a 0/1
    mask in training, 1 - p in evaluation; 1 where a vector is not zoned out). ``rdrop``:
    recurrent dropout masks (B, n_blocks, H) (see ``_recurrent_projection``)."""
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    state = np.array(state0, dtype=np.float64)
    y = np.zeros((steps, batch, hidden))
    tape = []
    for s in range(steps):
        rows = np.flatnonzero(s < lengths)
        if rows.size == 0:
            continue
        t = lengths[rows] - 1 - s if reverse else np.full(rows.size, s)
        xt = x[t, rows]
        h_prev = state[0, rows]
        zx = xt @ w_ih.T + b_ih
        zh = _recurrent_projection(h_prev, w_hh, b_hh, rdrop, rows)
        old = state[:, rows]
        new, cache = cell.forward(zx, zh, old, p, cfg)
        z = None
        if zone is not None:
            z = np.moveaxis(zone[t, rows], 1, 0)  # (S, rows, H)
            new = z * new + (1.0 - z) * old
        state[:, rows] = new
        y[t, rows] = new[0]
        if every is not None:
            every[:, t, rows] = new
        tape.append((rows, t, xt, h_prev, cache, z))
    return y, state, tape


def direction_backward(cell, tape, w_ih, w_hh, p, dy, dstate, x_shape, cfg, rdrop=None):
    """Backpropagate dy (T, B, H) and dstate (S, B, H) through one direction's tape (with the
    zoneout masks it recorded and the recurrent dropout masks ``rdrop`` forward used)."""
    ds = np.array(dstate, dtype=np.float64)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(w_ih.shape[0]), np.zeros(w_hh.shape[0])
    dp = np.zeros_like(p)
    dx = np.zeros(x_shape)
    for rows, t, xt, h_prev, cache, z in reversed(tape):
        d = ds[:, rows].copy()
        d[0] += dy[t, rows]
        if z is not None:  # new state = z * gate's + (1 - z) * previous
            d, d_kept = z * d, (1.0 - z) * d
        dzx, dzh, d_prev, dp_step = cell.backward(cache, d, p, cfg)
        dw_ih += dzx.T @ xt
        db_ih += dzx.sum(0)
        db_hh += dzh.sum(0)
        if dp.size:
            dp += dp_step
        dx[t, rows] += dzx @ w_ih
        d_prev = d_prev.copy()
        if rdrop is None:
            dw_hh += dzh.T @ h_prev
            d_prev[0] += dzh @ w_hh
        else:
            n_blocks = rdrop.shape[1]
            for k, (dz_k, w_k) in enumerate(zip(np.split(dzh, n_blocks, axis=1), np.split(w_hh, n_blocks, axis=0))):
                hidden = w_k.shape[0]
                dw_hh[k * hidden:(k + 1) * hidden] += dz_k.T @ (h_prev * rdrop[rows, k])
                d_prev[0] += (dz_k @ w_k) * rdrop[rows, k]
        if z is not None:
            d_prev = d_prev + d_kept
        ds[:, rows] = d_prev
    return dict(w_ih=dw_ih, w_hh=dw_hh, b_ih=db_ih, b_hh=db_hh, p=dp), dx, ds


def _suffix(layer, direction):
    return f"_l{layer}" + ("_reverse" if direction else "")


class NaiveRNN:
    """A multi-layer, optionally bidirectional reference with ``ln.LSTM``'s parameter names.

    ``params`` is a state_dict (any float dtype; computed in float64). ``masks``: the
    zoneout and recurrent dropout masks per (layer, direction), as ``ln.LSTM.last_masks``
    gives them: ``{"zoneout": {(l, d): (T, B, S, H)}, "recurrent_dropout": {(l, d): (B, n_blocks, H)}}``.
    """

    def __init__(self, gate, params, num_layers=1, bidirectional=False, cfg: Config | None = None, masks=None):
        self.gate = gate
        self.cell = CELLS[gate]
        self.params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self.num_layers = num_layers
        self.dirs = 2 if bidirectional else 1
        self.cfg = cfg or config()
        self.hidden = self.params["weight_ih_l0"].shape[0] // self.cell.n_blocks
        self.masks = masks or {}

    def _masks(self, kind, layer, direction):
        mask = self.masks.get(kind, {}).get((layer, direction))
        return None if mask is None else np.asarray(mask, dtype=np.float64)

    def _slot(self, layer, direction):
        """The slot's weights; a gate without ``weight_hh`` (IndRNN) gets zeros for W_hh and b_hh."""
        s = _suffix(layer, direction)
        g = self.params[f"weight_ih{s}"].shape[0]
        zeros = np.zeros(g)
        extra = EXTRA_PARAM[self.gate]
        p = self.params[f"{extra}{s}"] if extra else np.zeros(0)
        return (self.params[f"weight_ih{s}"], self.params.get(f"weight_hh{s}", np.zeros((g, self.hidden))),
                self.params.get(f"bias_ih{s}", zeros), self.params.get(f"bias_hh{s}", zeros), p)

    def forward(self, x, state0=None, lengths=None):
        """x (T, B, I); state0 (S, L*D, B, H) or None; returns y (T, B, D*H), final (S, L*D, B, H).

        ``self.every`` is then the last layer's state after every step (S, T, B, D*H), zeros at
        padded steps."""
        x = np.asarray(x, dtype=np.float64)
        steps, batch, _ = x.shape
        lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
        n_slots = self.num_layers * self.dirs
        if state0 is None:
            state0 = np.zeros((self.cell.n_state, n_slots, batch, self.hidden))
        state0 = np.asarray(state0, dtype=np.float64)
        final = np.zeros_like(state0)
        self._tapes, self._inputs = {}, []
        layer_input = x
        for layer in range(self.num_layers):
            self._inputs.append(layer_input)
            outs, everies = [], []
            for d in range(self.dirs):
                k = layer * self.dirs + d
                w_ih, w_hh, b_ih, b_hh, p = self._slot(layer, d)
                every = np.zeros((self.cell.n_state, steps, batch, self.hidden))
                zone = self._masks("zoneout", layer, d)
                if zone is not None and zone.shape[0] == 1:  # evaluation: the same factors at every step and row
                    zone = np.broadcast_to(zone, (steps, batch) + zone.shape[2:])
                y, fin, tape = direction_forward(self.cell, layer_input, w_ih, w_hh, b_ih, b_hh, p,
                                                 state0[:, k], lengths, bool(d), self.cfg, every, zone,
                                                 self._masks("recurrent_dropout", layer, d))
                final[:, k] = fin
                self._tapes[k] = tape
                outs.append(y)
                everies.append(every)
            layer_input = np.concatenate(outs, axis=2)
            self.every = np.concatenate(everies, axis=3)
        return layer_input, final

    def backward(self, dy, dstate=None):
        """Gradients of the last forward: (param grads by state_dict key, dx, dstate0)."""
        dy = np.asarray(dy, dtype=np.float64)
        n_slots = self.num_layers * self.dirs
        batch = dy.shape[1]
        if dstate is None:
            dstate = np.zeros((self.cell.n_state, n_slots, batch, self.hidden))
        dstate = np.asarray(dstate, dtype=np.float64)
        grads, dstate0 = {}, np.zeros_like(dstate)
        d_out = dy
        for layer in reversed(range(self.num_layers)):
            x_in = self._inputs[layer]
            d_in = np.zeros(x_in.shape)
            for d in range(self.dirs):
                k = layer * self.dirs + d
                w_ih, w_hh, b_ih, b_hh, p = self._slot(layer, d)
                h = slice(d * self.hidden, (d + 1) * self.hidden)
                g, dx, ds0 = direction_backward(self.cell, self._tapes[k], w_ih, w_hh, p, d_out[:, :, h],
                                                dstate[:, k], x_in.shape, self.cfg,
                                                self._masks("recurrent_dropout", layer, d))
                s = _suffix(layer, d)
                grads[f"weight_ih{s}"] = g["w_ih"]
                if f"weight_hh{s}" in self.params:
                    grads[f"weight_hh{s}"] = g["w_hh"]
                if f"bias_ih{s}" in self.params:
                    grads[f"bias_ih{s}"] = g["b_ih"]
                if f"bias_hh{s}" in self.params:
                    grads[f"bias_hh{s}"] = g["b_hh"]
                extra = EXTRA_PARAM[self.gate]
                if extra:
                    grads[f"{extra}{s}"] = g["p"]
                dstate0[:, k] = ds0
                d_in += dx
            d_out = d_in
        return grads, d_out, dstate0
