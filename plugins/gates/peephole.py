"""LSTM with peephole connections, in the ONNX (Gers and Schmidhuber) form.

The extra parameter ``weight_peephole`` holds P = [p_i, p_f, p_o], 3 * H values:

    i = ract(z_i + p_i * c_{t-1})   f = ract(z_f + p_f * c_{t-1})   g = act(z_g)
    c_t = f * c_{t-1} + i * g
    o = ract(z_o + p_o * c_t)
    h_t = o * act(c_t)
"""

from lstm_numba.contract import (
    ExtraParam,
    Gate,
    blocks,
    clamp,
    clip_grad,
    pointwise,
    zero,
)


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xi, xf, xg, xo = blocks(gx, 4)
    hi, hf, hg, ho = blocks(gh, 4)
    pi, pf, po = blocks(p, 3)
    c_prev = blocks(s_prev, 2)[1]
    h_next, c_next = blocks(s_next, 2)
    for j in range(h_next.size):
        i = ract(clamp(xi[j] + hi[j] + pi[j] * c_prev[j], clip))[0]
        f = ract(clamp(xf[j] + hf[j] + pf[j] * c_prev[j], clip))[0]
        g = act(clamp(xg[j] + hg[j], clip))[0]
        c = f * c_prev[j] + i * g
        o = ract(clamp(xo[j] + ho[j] + po[j] * c, clip))[0]
        c_next[j] = c
        h_next[j] = o * act(c)[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xi, xf, xg, xo = blocks(gx, 4)
    hi, hf, hg, ho = blocks(gh, 4)
    # dgh would equal dgx: an additive gate leaves it to the engine (see Gate.additive)
    dxi, dxf, dxg, dxo = blocks(dgx, 4)
    pi, pf, po = blocks(p, 3)
    dpi, dpf, dpo = blocks(dp, 3)
    c_prev = blocks(s_prev, 2)[1]
    dh_next, dc_next = blocks(ds_next, 2)
    dh_prev, dc_prev = blocks(ds_prev, 2)
    for j in range(dh_next.size):
        cp = c_prev[j]
        zi = xi[j] + hi[j] + pi[j] * cp
        zf = xf[j] + hf[j] + pf[j] * cp
        zg = xg[j] + hg[j]
        i, di = ract(clamp(zi, clip))
        f, df = ract(clamp(zf, clip))
        g, dg = act(clamp(zg, clip))
        c = f * cp + i * g
        zo = xo[j] + ho[j] + po[j] * c
        o, do = ract(clamp(zo, clip))
        tc, dtc = act(c)
        dh = dh_next[j]
        dzo = dh * tc * do * clip_grad(zo, clip)
        dc = dc_next[j] + dh * o * dtc + dzo * po[j]
        dzi = dc * g * di * clip_grad(zi, clip)
        dzf = dc * cp * df * clip_grad(zf, clip)
        dzg = dc * i * dg * clip_grad(zg, clip)
        dxi[j] = dzi
        dxf[j] = dzf
        dxg[j] = dzg
        dxo[j] = dzo
        dpi[j] += dzi * cp
        dpf[j] += dzf * cp
        dpo[j] += dzo * c
        dh_prev[j] = zero(dh)
        dc_prev[j] = dc * f + dzi * pi[j] + dzf * pf[j]


gate = Gate(
    n_blocks=4,
    state_names=("h", "c"),
    forward=forward,
    backward=backward,
    extra_params=(ExtraParam("weight_peephole", blocks=3, init="uniform"),),
    elementwise=True,
    additive=True,
    projectable=True, doc=__doc__,
            description="peephole LSTM (Gers & Schmidhuber 2000) in ONNX LSTM's form, P = [p_i, p_f, p_o]",
)
