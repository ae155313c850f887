"""The standard LSTM, PyTorch's gate order i, f, g, o.

    i = ract(z_i)   f = ract(z_f)   g = act(z_g)   o = ract(z_o)     z = gx + gh
    c_t = f * c_{t-1} + i * g
    h_t = o * act(c_t)
"""

from lstm_numba.contract import Gate, clamp, clip_grad, pointwise, zero


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    hidden = s_next.shape[1]
    for j in range(hidden):
        i = ract(clamp(gx[j] + gh[j], clip))[0]
        f = ract(clamp(gx[hidden + j] + gh[hidden + j], clip))[0]
        g = act(clamp(gx[2 * hidden + j] + gh[2 * hidden + j], clip))[0]
        o = ract(clamp(gx[3 * hidden + j] + gh[3 * hidden + j], clip))[0]
        c = f * s_prev[1, j] + i * g
        s_next[1, j] = c
        s_next[0, j] = o * act(c)[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    hidden = ds_next.shape[1]
    for j in range(hidden):
        zi = gx[j] + gh[j]
        zf = gx[hidden + j] + gh[hidden + j]
        zg = gx[2 * hidden + j] + gh[2 * hidden + j]
        zo = gx[3 * hidden + j] + gh[3 * hidden + j]
        i, di = ract(clamp(zi, clip))
        f, df = ract(clamp(zf, clip))
        g, dg = act(clamp(zg, clip))
        o, do = ract(clamp(zo, clip))
        c_prev = s_prev[1, j]
        tc, dtc = act(f * c_prev + i * g)
        dh = ds_next[0, j]
        dc = ds_next[1, j] + dh * o * dtc
        dzi = dc * g * di * clip_grad(zi, clip)
        dzf = dc * c_prev * df * clip_grad(zf, clip)
        dzg = dc * i * dg * clip_grad(zg, clip)
        dzo = dh * tc * do * clip_grad(zo, clip)
        dgx[j] = dgh[j] = dzi
        dgx[hidden + j] = dgh[hidden + j] = dzf
        dgx[2 * hidden + j] = dgh[2 * hidden + j] = dzg
        dgx[3 * hidden + j] = dgh[3 * hidden + j] = dzo
        ds_prev[0, j] = zero(dh)
        ds_prev[1, j] = dc * f


gate = Gate(n_blocks=4, state_names=("h", "c"), forward=forward, backward=backward, doc=__doc__)
