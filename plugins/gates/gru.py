"""GRU in PyTorch's form, gate order r, z, n, state h only.

    r = ract(gx_r + gh_r)   z = ract(gx_z + gh_z)   n = act(gx_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

``gh_n`` includes ``b_hn``, so ``b_hn`` sits inside the reset gate's product, as in
``torch.nn.GRU``; its weights load unchanged.
"""

from lstm_numba.contract import Gate, clamp, clip_grad, one, pointwise


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    hidden = s_next.shape[1]
    for j in range(hidden):
        r = ract(clamp(gx[j] + gh[j], clip))[0]
        z = ract(clamp(gx[hidden + j] + gh[hidden + j], clip))[0]
        n = act(clamp(gx[2 * hidden + j] + r * gh[2 * hidden + j], clip))[0]
        s_next[0, j] = (one(z) - z) * n + z * s_prev[0, j]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    hidden = ds_next.shape[1]
    for j in range(hidden):
        zr = gx[j] + gh[j]
        zz = gx[hidden + j] + gh[hidden + j]
        r, dr_act = ract(clamp(zr, clip))
        z, dz_act = ract(clamp(zz, clip))
        zn = gx[2 * hidden + j] + r * gh[2 * hidden + j]
        n, dn_act = act(clamp(zn, clip))
        h_prev = s_prev[0, j]
        dh = ds_next[0, j]
        dzn = dh * (one(z) - z) * dn_act * clip_grad(zn, clip)
        dzz = dh * (h_prev - n) * dz_act * clip_grad(zz, clip)
        dzr = dzn * gh[2 * hidden + j] * dr_act * clip_grad(zr, clip)
        dgx[j] = dgh[j] = dzr
        dgx[hidden + j] = dgh[hidden + j] = dzz
        dgx[2 * hidden + j] = dzn
        dgh[2 * hidden + j] = dzn * r
        ds_prev[0, j] = dh * z


gate = Gate(n_blocks=3, state_names=("h",), forward=forward, backward=backward, doc=__doc__)
