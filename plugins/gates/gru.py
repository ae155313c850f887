"""GRU in PyTorch's form, gate order r, z, n, state h only.

    r = ract(gx_r + gh_r)   z = ract(gx_z + gh_z)   n = act(gx_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

``gh_n`` includes ``b_hn``, so ``b_hn`` sits inside the reset gate's product, as in
``torch.nn.GRU``; its weights load unchanged.
"""

from lstm_numba.contract import Gate, blocks, clamp, clip_grad, one, pointwise


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xr, xz, xn = blocks(gx, 3)
    hr, hz, hn = blocks(gh, 3)
    for j in range(s_next.size):
        r = ract(clamp(xr[j] + hr[j], clip))[0]
        z = ract(clamp(xz[j] + hz[j], clip))[0]
        n = act(clamp(xn[j] + r * hn[j], clip))[0]
        s_next[j] = (one(z) - z) * n + z * s_prev[j]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xr, xz, xn = blocks(gx, 3)
    hr, hz, hn = blocks(gh, 3)
    dxr, dxz, dxn = blocks(dgx, 3)
    dhr, dhz, dhn = blocks(dgh, 3)
    for j in range(ds_next.size):
        zr = xr[j] + hr[j]
        zz = xz[j] + hz[j]
        r, dr_act = ract(clamp(zr, clip))
        z, dz_act = ract(clamp(zz, clip))
        zn = xn[j] + r * hn[j]
        n, dn_act = act(clamp(zn, clip))
        dh = ds_next[j]
        dzn = dh * (one(z) - z) * dn_act * clip_grad(zn, clip)
        dzz = dh * (s_prev[j] - n) * dz_act * clip_grad(zz, clip)
        dzr = dzn * hn[j] * dr_act * clip_grad(zr, clip)
        dxr[j] = dzr
        dhr[j] = dzr
        dxz[j] = dzz
        dhz[j] = dzz
        dxn[j] = dzn
        dhn[j] = dzn * r
        ds_prev[j] = dh * z


gate = Gate(n_blocks=3, state_names=("h",), forward=forward, backward=backward, elementwise=True,
            doc=__doc__,
            description="GRU (Cho et al. 2014) in torch.nn.GRU's form, b_hn inside the reset product")
