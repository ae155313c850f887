"""Layer-normalised LSTM: haste's LayerNormLSTM (lmnt-com/haste, ``layer_norm_lstm.py``), in
PyTorch's gate order i, f, g, o. One batch row, one step; G = 4H::

    x_hat = LN(gx)      h_hat = LN(gh)                  LN over all G values
    z     = gamma_x * x_hat + gamma_h * h_hat + beta    (G,)
    i = ract(clamp(z_i))  f = ract(clamp(z_f))  g = act(clamp(z_g))  o = ract(clamp(z_o))
    c_t   = f * c_{t-1} + i * g                         (the state keeps c_t un-normalised)
    c_hat = LN(c_t)                                     LN over the H values
    h_t   = o * act(gamma_c * c_hat + beta_c)

with ``LN`` of :mod:`layer_norm` (epsilon 1e-5). The extra parameters, concatenated in ``p``
in this order: ``ln_gamma_x`` (4H, ones), ``ln_gamma_h`` (4H, ones), ``ln_beta`` (4H,
zeros), ``ln_gamma_c`` (H, ones), ``ln_beta_c`` (H, zeros). haste has no bias inside the
norms (its one ``bias`` is ``ln_beta``): with ``bias=False`` the layer is haste's cell
exactly (``gamma`` = [ln_gamma_x, ln_gamma_h], ``gamma_h``/``beta_h`` = ln_gamma_c/ln_beta_c,
haste's blocks i, g, f, o reordered); with the layer's biases, ``b_ih`` and ``b_hh`` are
added before their norms.

Layer normalisation couples the units of a row, so the gate declares neither
``elementwise`` nor ``additive``, and the loops below make several passes over the row.
They need no scratch memory: forward keeps c_t in ``s_next`` until its statistics are
known, and backward uses its own outputs (``ds_prev``, ``dgx``) as scratch before writing
their final values.
"""

from lstm_numba.contract import ExtraParam, Gate, blocks, clamp, clip_grad, one, pointwise, zero
from lstm_numba_plugins.gates.layer_norm import EPS, like, moments, norm_backward


@pointwise
def _params(p):
    """The 14 H-blocks of ``p``: gamma_x (4), gamma_h (4), beta (4), gamma_c, beta_c."""
    return blocks(p, 14)


@pointwise
def _z(gamma_x, x, gamma_h, h, beta, j, mx, rx, mh, rh):
    """One pre-activation: gamma_x * x_hat + gamma_h * h_hat + beta, for unit ``j`` of a block."""
    return gamma_x[j] * (x[j] - mx) * rx + gamma_h[j] * (h[j] - mh) * rh + beta[j]


@pointwise
def _cell(gx, gh, p, c_prev, clip, act, ract, mx, rx, mh, rh, c_out):
    """c_out = f * c_{t-1} + i * g: forward's cell update, which backward recomputes."""
    xi, xf, xg, _ = blocks(gx, 4)
    hi, hf, hg, _ = blocks(gh, 4)
    (axi, axf, axg, _, ahi, ahf, ahg, _, bi, bf, bg, _, _, _) = _params(p)
    for j in range(c_out.size):
        i = ract(clamp(_z(axi, xi, ahi, hi, bi, j, mx, rx, mh, rh), clip))[0]
        f = ract(clamp(_z(axf, xf, ahf, hf, bf, j, mx, rx, mh, rh), clip))[0]
        g = act(clamp(_z(axg, xg, ahg, hg, bg, j, mx, rx, mh, rh), clip))[0]
        c_out[j] = f * c_prev[j] + i * g


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xo = blocks(gx, 4)[3]
    ho = blocks(gh, 4)[3]
    (_, _, _, axo, _, _, _, aho, _, _, _, bo, gamma_c, beta_c) = _params(p)
    c_prev = blocks(s_prev, 2)[1]
    h_next, c_next = blocks(s_next, 2)
    eps = like(gx[0], EPS)
    mx, rx = moments(gx, eps)
    mh, rh = moments(gh, eps)
    _cell(gx, gh, p, c_prev, clip, act, ract, mx, rx, mh, rh, c_next)
    mc, rc = moments(c_next, eps)
    for j in range(h_next.size):
        o = ract(clamp(_z(axo, xo, aho, ho, bo, j, mx, rx, mh, rh), clip))[0]
        h_next[j] = o * act(gamma_c[j] * (c_next[j] - mc) * rc + beta_c[j])[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xi, xf, xg, xo = blocks(gx, 4)
    hi, hf, hg, ho = blocks(gh, 4)
    dxi, dxf, dxg, dxo = blocks(dgx, 4)
    (axi, axf, axg, axo, ahi, ahf, ahg, aho, bi, bf, bg, bo, gamma_c, beta_c) = _params(p)
    n_gates = gx.size
    gamma_x, gamma_h = p[:n_gates], p[n_gates:2 * n_gates]
    dgamma_x, dgamma_h, dbeta = dp[:n_gates], dp[n_gates:2 * n_gates], dp[2 * n_gates:3 * n_gates]
    dp_blocks = blocks(dp, 14)
    dgamma_c, dbeta_c = dp_blocks[12], dp_blocks[13]
    c_prev = blocks(s_prev, 2)[1]
    dh_next, dc_next = blocks(ds_next, 2)
    dh_prev, dc_prev = blocks(ds_prev, 2)
    eps = like(gx[0], EPS)
    mx, rx = moments(gx, eps)
    mh, rh = moments(gh, eps)

    # Pass 1: recompute c_t, into dc_prev as scratch.
    _cell(gx, gh, p, c_prev, clip, act, ract, mx, rx, mh, rh, dc_prev)
    mc, rc = moments(dc_prev, eps)

    # Pass 2: through h_t = o * act(gamma_c * c_hat + beta_c). dLoss/dc_hat goes to dh_prev
    # as scratch, dLoss/dz_o to its final place in dgx.
    s1 = zero(eps)
    s2 = zero(eps)
    for j in range(dh_prev.size):
        zo = _z(axo, xo, aho, ho, bo, j, mx, rx, mh, rh)
        o, do = ract(clamp(zo, clip))
        c_hat = (dc_prev[j] - mc) * rc
        a, da = act(gamma_c[j] * c_hat + beta_c[j])
        dh = dh_next[j]
        dxo[j] = dh * a * do * clip_grad(zo, clip)
        d_a = dh * o * da
        dgamma_c[j] += d_a * c_hat
        dbeta_c[j] += d_a
        d_chat = d_a * gamma_c[j]
        dh_prev[j] = d_chat
        s1 += d_chat
        s2 += d_chat * c_hat
    inv_h = one(eps) / like(eps, dh_prev.size)
    s1 *= inv_h
    s2 *= inv_h

    # Pass 3: through LN(c_t) and the cell update; dLoss/dz_{i,f,g} into dgx.
    for j in range(dc_prev.size):
        c_hat = (dc_prev[j] - mc) * rc
        dc = dc_next[j] + (dh_prev[j] - s1 - c_hat * s2) * rc
        zi = _z(axi, xi, ahi, hi, bi, j, mx, rx, mh, rh)
        zf = _z(axf, xf, ahf, hf, bf, j, mx, rx, mh, rh)
        zg = _z(axg, xg, ahg, hg, bg, j, mx, rx, mh, rh)
        i, di = ract(clamp(zi, clip))
        f, df = ract(clamp(zf, clip))
        g, dg = act(clamp(zg, clip))
        dxi[j] = dc * g * di * clip_grad(zi, clip)
        dxf[j] = dc * c_prev[j] * df * clip_grad(zf, clip)
        dxg[j] = dc * i * dg * clip_grad(zg, clip)
        dc_prev[j] = dc * f
        dh_prev[j] = zero(dc)

    # Pass 4: beta's gradient, then the two norms' backward from dLoss/dz (in dgx until the
    # input norm's backward overwrites it).
    for k in range(n_gates):
        dbeta[k] += dgx[k]
    norm_backward(gh, mh, rh, gamma_h, dgx, dgamma_h, dgh)
    norm_backward(gx, mx, rx, gamma_x, dgx, dgamma_x, dgx)


gate = Gate(
    n_blocks=4,
    state_names=("h", "c"),
    forward=forward,
    backward=backward,
    extra_params=(
        ExtraParam("ln_gamma_x", blocks=4, init="ones"),
        ExtraParam("ln_gamma_h", blocks=4, init="ones"),
        ExtraParam("ln_beta", blocks=4, init="zeros"),
        ExtraParam("ln_gamma_c", blocks=1, init="ones"),
        ExtraParam("ln_beta_c", blocks=1, init="zeros"),
    ),
    doc=__doc__,
    description="layer-normalised LSTM (Ba et al. 2016), haste's LayerNormLSTM",
)
