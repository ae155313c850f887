"""LSTM with peephole connections, in the ONNX (Gers and Schmidhuber) form.

The extra parameter ``weight_peephole`` holds P = [p_i, p_f, p_o], 3 * H values:

    i = ract(z_i + p_i * c_{t-1})   f = ract(z_f + p_f * c_{t-1})   g = act(z_g)
    c_t = f * c_{t-1} + i * g
    o = ract(z_o + p_o * c_t)
    h_t = o * act(c_t)
"""

from lstm_numba.contract import ExtraParam, Gate, clamp, clip_grad, pointwise, zero


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    hidden = s_next.shape[1]
    for j in range(hidden):
        c_prev = s_prev[1, j]
        i = ract(clamp(gx[j] + gh[j] + p[j] * c_prev, clip))[0]
        f = ract(clamp(gx[hidden + j] + gh[hidden + j] + p[hidden + j] * c_prev, clip))[0]
        g = act(clamp(gx[2 * hidden + j] + gh[2 * hidden + j], clip))[0]
        c = f * c_prev + i * g
        o = ract(clamp(gx[3 * hidden + j] + gh[3 * hidden + j] + p[2 * hidden + j] * c, clip))[0]
        s_next[1, j] = c
        s_next[0, j] = o * act(c)[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    hidden = ds_next.shape[1]
    for j in range(hidden):
        c_prev = s_prev[1, j]
        zi = gx[j] + gh[j] + p[j] * c_prev
        zf = gx[hidden + j] + gh[hidden + j] + p[hidden + j] * c_prev
        zg = gx[2 * hidden + j] + gh[2 * hidden + j]
        i, di = ract(clamp(zi, clip))
        f, df = ract(clamp(zf, clip))
        g, dg = act(clamp(zg, clip))
        c = f * c_prev + i * g
        zo = gx[3 * hidden + j] + gh[3 * hidden + j] + p[2 * hidden + j] * c
        o, do = ract(clamp(zo, clip))
        tc, dtc = act(c)
        dh = ds_next[0, j]
        dzo = dh * tc * do * clip_grad(zo, clip)
        dc = ds_next[1, j] + dh * o * dtc + dzo * p[2 * hidden + j]
        dzi = dc * g * di * clip_grad(zi, clip)
        dzf = dc * c_prev * df * clip_grad(zf, clip)
        dzg = dc * i * dg * clip_grad(zg, clip)
        dgx[j] = dgh[j] = dzi
        dgx[hidden + j] = dgh[hidden + j] = dzf
        dgx[2 * hidden + j] = dgh[2 * hidden + j] = dzg
        dgx[3 * hidden + j] = dgh[3 * hidden + j] = dzo
        dp[j] += dzi * c_prev
        dp[hidden + j] += dzf * c_prev
        dp[2 * hidden + j] += dzo * c
        ds_prev[0, j] = zero(dh)
        ds_prev[1, j] = dc * f + dzi * p[j] + dzf * p[hidden + j]


gate = Gate(
    n_blocks=4,
    state_names=("h", "c"),
    forward=forward,
    backward=backward,
    extra_params=(ExtraParam("weight_peephole", blocks=3, init="uniform"),),
    doc=__doc__,
)
