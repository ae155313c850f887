"""Coupled input-forget gate LSTM (ONNX ``input_forget=1``): f = 1 - i.

Three gate blocks, in the order i, g, o:

    i = ract(z_i)   g = act(z_g)   o = ract(z_o)
    c_t = (1 - i) * c_{t-1} + i * g
    h_t = o * act(c_t)
"""

from lstm_numba.contract import Gate, blocks, clamp, clip_grad, one, pointwise, zero


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xi, xg, xo = blocks(gx, 3)
    hi, hg, ho = blocks(gh, 3)
    c_prev = blocks(s_prev, 2)[1]
    h_next, c_next = blocks(s_next, 2)
    for j in range(h_next.size):
        i = ract(clamp(xi[j] + hi[j], clip))[0]
        g = act(clamp(xg[j] + hg[j], clip))[0]
        o = ract(clamp(xo[j] + ho[j], clip))[0]
        c = (one(i) - i) * c_prev[j] + i * g
        c_next[j] = c
        h_next[j] = o * act(c)[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xi, xg, xo = blocks(gx, 3)
    hi, hg, ho = blocks(gh, 3)
    # dgh would equal dgx: an additive gate leaves it to the engine (see Gate.additive)
    dxi, dxg, dxo = blocks(dgx, 3)
    c_prev = blocks(s_prev, 2)[1]
    dh_next, dc_next = blocks(ds_next, 2)
    dh_prev, dc_prev = blocks(ds_prev, 2)
    for j in range(dh_next.size):
        zi = xi[j] + hi[j]
        zg = xg[j] + hg[j]
        zo = xo[j] + ho[j]
        i, di = ract(clamp(zi, clip))
        g, dg = act(clamp(zg, clip))
        o, do = ract(clamp(zo, clip))
        cp = c_prev[j]
        f = one(i) - i
        tc, dtc = act(f * cp + i * g)
        dh = dh_next[j]
        dc = dc_next[j] + dh * o * dtc
        dzi = dc * (g - cp) * di * clip_grad(zi, clip)
        dzg = dc * i * dg * clip_grad(zg, clip)
        dzo = dh * tc * do * clip_grad(zo, clip)
        dxi[j] = dzi
        dxg[j] = dzg
        dxo[j] = dzo
        dh_prev[j] = zero(dh)
        dc_prev[j] = dc * f


gate = Gate(n_blocks=3, state_names=("h", "c"), forward=forward, backward=backward, elementwise=True, additive=True,
            projectable=True, doc=__doc__,
            description="coupled input-forget LSTM, f = 1 - i (ONNX LSTM input_forget=1; Greff et al. 2017)")
