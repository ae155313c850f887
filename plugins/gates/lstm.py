"""The standard LSTM, PyTorch's gate order i, f, g, o.

    i = ract(z_i)   f = ract(z_f)   g = act(z_g)   o = ract(z_o)     z = gx + gh
    c_t = f * c_{t-1} + i * g
    h_t = o * act(c_t)
"""

from lstm_numba.contract import Gate, blocks, clamp, clip_grad, pointwise, zero


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xi, xf, xg, xo = blocks(gx, 4)
    hi, hf, hg, ho = blocks(gh, 4)
    c_prev = blocks(s_prev, 2)[1]
    h_next, c_next = blocks(s_next, 2)
    for j in range(h_next.size):
        i = ract(clamp(xi[j] + hi[j], clip))[0]
        f = ract(clamp(xf[j] + hf[j], clip))[0]
        g = act(clamp(xg[j] + hg[j], clip))[0]
        o = ract(clamp(xo[j] + ho[j], clip))[0]
        c = f * c_prev[j] + i * g
        c_next[j] = c
        h_next[j] = o * act(c)[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xi, xf, xg, xo = blocks(gx, 4)
    hi, hf, hg, ho = blocks(gh, 4)
    # dgh would equal dgx: an additive gate leaves it to the engine (see Gate.additive)
    dxi, dxf, dxg, dxo = blocks(dgx, 4)
    c_prev = blocks(s_prev, 2)[1]
    dh_next, dc_next = blocks(ds_next, 2)
    dh_prev, dc_prev = blocks(ds_prev, 2)
    for j in range(dh_next.size):
        zi = xi[j] + hi[j]
        zf = xf[j] + hf[j]
        zg = xg[j] + hg[j]
        zo = xo[j] + ho[j]
        i, di = ract(clamp(zi, clip))
        f, df = ract(clamp(zf, clip))
        g, dg = act(clamp(zg, clip))
        o, do = ract(clamp(zo, clip))
        tc, dtc = act(f * c_prev[j] + i * g)
        dh = dh_next[j]
        dc = dc_next[j] + dh * o * dtc
        dzi = dc * g * di * clip_grad(zi, clip)
        dzf = dc * c_prev[j] * df * clip_grad(zf, clip)
        dzg = dc * i * dg * clip_grad(zg, clip)
        dzo = dh * tc * do * clip_grad(zo, clip)
        dxi[j] = dzi
        dxf[j] = dzf
        dxg[j] = dzg
        dxo[j] = dzo
        dh_prev[j] = zero(dh)
        dc_prev[j] = dc * f


gate = Gate(n_blocks=4, state_names=("h", "c"), forward=forward, backward=backward, elementwise=True, additive=True,
            projectable=True, doc=__doc__,
            description="LSTM (Hochreiter & Schmidhuber 1997) in torch.nn.LSTM's form, gates i, f, g, o")
