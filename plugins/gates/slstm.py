"""sLSTM, the scalar-memory cell of xLSTM (Beck et al., 2024): exponential input gating with
a normaliser and a stabiliser state. Four gate blocks in the order i, f, z, o and four
states h, c, n, m:

    lf  = log sigmoid(z_f)                  m_t = max(z_i, lf + m_{t-1})
    i   = exp(z_i - m_t)                    f   = exp(lf + m_{t-1} - m_t)
    z   = act(z_z)                          o   = ract(z_o)
    c_t = f * c_{t-1} + i * z               n_t = f * n_{t-1} + i
    h_t = o * c_t / n_t

m keeps both exponentials at or below 1, and h_t does not depend on it: c_t and n_t are
exp(-m_t) times the unstabilised sums of exp(z_i) z and exp(z_i). A state with n = 0 is
empty (the zero initial state): the step starts afresh, m_t = z_i and f = 0, so c_{t-1}
and m_{t-1} are not read, and n_t >= 1 from then on. One head: W_hh is a full matrix,
not xLSTM's block-diagonal one. ``clip`` clamps the four pre-activations.
"""

from lstm_numba.contract import (
    Gate,
    blocks,
    clamp,
    clip_grad,
    fast_exp,
    fast_log1p,
    fast_sigmoid,
    one,
    pointwise,
    zero,
)


@pointwise
def log_sigmoid(x):
    return min(x, zero(x)) - fast_log1p(fast_exp(-abs(x)))


@pointwise
def stabilised(z_i, lf, m_prev, n_prev):
    """(m_t, i, f, wins) for one unit; ``wins``: m_t is z_i (an empty state, or z_i >= lf + m_{t-1})."""
    empty = n_prev == zero(n_prev)
    wins = empty | (z_i >= lf + m_prev)
    m = z_i if wins else lf + m_prev
    f = zero(m) if empty else fast_exp(lf + m_prev - m)
    return m, fast_exp(z_i - m), f, wins


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xi, xf, xz, xo = blocks(gx, 4)
    hi, hf, hz, ho = blocks(gh, 4)
    _, c_prev, n_prev, m_prev = blocks(s_prev, 4)
    h_next, c_next, n_next, m_next = blocks(s_next, 4)
    for j in range(h_next.size):
        z_i = clamp(xi[j] + hi[j], clip)
        lf = log_sigmoid(clamp(xf[j] + hf[j], clip))
        z = act(clamp(xz[j] + hz[j], clip))[0]
        o = ract(clamp(xo[j] + ho[j], clip))[0]
        m, i, f, _ = stabilised(z_i, lf, m_prev[j], n_prev[j])
        c = f * c_prev[j] + i * z
        n = f * n_prev[j] + i
        c_next[j] = c
        n_next[j] = n
        m_next[j] = m
        h_next[j] = o * c / n


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xi, xf, xz, xo = blocks(gx, 4)
    hi, hf, hz, ho = blocks(gh, 4)
    # dgh would equal dgx: an additive gate leaves it to the engine (see Gate.additive)
    dxi, dxf, dxz, dxo = blocks(dgx, 4)
    _, c_prev, n_prev, m_prev = blocks(s_prev, 4)
    dh_next, dc_next, dn_next, dm_next = blocks(ds_next, 4)
    dh_prev, dc_prev, dn_prev, dm_prev = blocks(ds_prev, 4)
    for j in range(dh_next.size):
        ai = xi[j] + hi[j]
        af = xf[j] + hf[j]
        az = xz[j] + hz[j]
        ao = xo[j] + ho[j]
        z_i = clamp(ai, clip)
        z_f = clamp(af, clip)
        lf = log_sigmoid(z_f)
        z, dz = act(clamp(az, clip))
        o, do = ract(clamp(ao, clip))
        _, i, f, wins = stabilised(z_i, lf, m_prev[j], n_prev[j])
        c = f * c_prev[j] + i * z
        inv_n = one(c) / (f * n_prev[j] + i)
        ratio = c * inv_n
        dh = dh_next[j]
        dc = dc_next[j] + dh * o * inv_n
        dn = dn_next[j] - dh * o * ratio * inv_n
        d_log_i = (dc * z + dn) * i  # dLoss/d(z_i - m_t)
        d_log_f = (dc * c_prev[j] + dn * n_prev[j]) * f  # dLoss/d(lf + m_{t-1} - m_t)
        dm = dm_next[j] - d_log_i - d_log_f  # all of dLoss/dm_t
        # m_t follows whichever argument of the max is larger
        dm_input = dm if wins else zero(dm)
        dm_forget = zero(dm) if wins else dm
        dxi[j] = (d_log_i + dm_input) * clip_grad(ai, clip)
        dxf[j] = (d_log_f + dm_forget) * fast_sigmoid(-z_f) * clip_grad(af, clip)
        dxz[j] = dc * i * dz * clip_grad(az, clip)
        dxo[j] = dh * ratio * do * clip_grad(ao, clip)
        dh_prev[j] = zero(dh)
        dc_prev[j] = dc * f
        dn_prev[j] = dn * f
        dm_prev[j] = d_log_f + dm_forget


gate = Gate(n_blocks=4, state_names=("h", "c", "n", "m"), forward=forward, backward=backward, elementwise=True,
            additive=True, projectable=True, doc=__doc__,
            description="sLSTM, xLSTM's exponential-gating scalar-memory cell (Beck et al. 2024, arXiv 2405.04517)")
