"""Layer-normalised GRU: haste's LayerNormGRU (lmnt-com/haste, ``layer_norm_gru.py`` and
``lib/layer_norm_gru_forward_gpu.cu.cc``), in PyTorch's gate order r, z, n. One batch row,
one step; G = 3H::

    a = gamma_x * LN(gx) + beta_x      b = gamma_h * LN(gh) + beta_h      LN over all G values
    r = ract(clamp(a_r + b_r))   z = ract(clamp(a_z + b_z))   n = act(clamp(a_n + r * b_n))
    h_t = (1 - z) * n + z * h_{t-1}

with ``LN`` of :mod:`layer_norm` (epsilon 1e-5). The reset gate multiplies the whole
normalised recurrent part of n, its shift ``beta_h`` included, as haste's kernel multiplies
``Rh + br``. The extra parameters, concatenated in ``p`` in this order: ``ln_gamma_x`` (3H,
ones), ``ln_gamma_h`` (3H, ones), ``ln_beta_x`` (3H, zeros), ``ln_beta_h`` (3H, zeros).
haste's biases come after the norms: its ``gamma`` (2, 3H) is [ln_gamma_x, ln_gamma_h], its
``bias`` ``ln_beta_x`` and its ``recurrent_bias`` ``ln_beta_h`` (its blocks z, r, h
reordered to r, z, n), so with ``bias=False`` the layer is haste's cell exactly; with the
layer's biases, ``b_ih`` and ``b_hh`` are added before their norms.

Not elementwise (the norms couple the units of a row) and not additive (the norms and the
reset gate treat gx and gh apart). Backward writes dLoss/da and dLoss/db into ``dgx`` and
``dgh`` first and replaces them with the norms' backward.
"""

from lstm_numba.contract import ExtraParam, Gate, blocks, clamp, clip_grad, one, pointwise
from lstm_numba_plugins.gates.layer_norm import EPS, like, moments, norm_backward


@pointwise
def _affine(gamma, v, beta, j, mean, rstd):
    """gamma * LN(v) + beta for unit ``j`` of a block."""
    return gamma[j] * (v[j] - mean) * rstd + beta[j]


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xr, xz, xn = blocks(gx, 3)
    hr, hz, hn = blocks(gh, 3)
    axr, axz, axn, ahr, ahz, ahn, bxr, bxz, bxn, bhr, bhz, bhn = blocks(p, 12)
    eps = like(gx[0], EPS)
    mx, rx = moments(gx, eps)
    mh, rh = moments(gh, eps)
    for j in range(s_next.size):
        r = ract(clamp(_affine(axr, xr, bxr, j, mx, rx) + _affine(ahr, hr, bhr, j, mh, rh), clip))[0]
        z = ract(clamp(_affine(axz, xz, bxz, j, mx, rx) + _affine(ahz, hz, bhz, j, mh, rh), clip))[0]
        n = act(clamp(_affine(axn, xn, bxn, j, mx, rx) + r * _affine(ahn, hn, bhn, j, mh, rh), clip))[0]
        s_next[j] = (one(z) - z) * n + z * s_prev[j]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xr, xz, xn = blocks(gx, 3)
    hr, hz, hn = blocks(gh, 3)
    axr, axz, axn, ahr, ahz, ahn, bxr, bxz, bxn, bhr, bhz, bhn = blocks(p, 12)
    dar, daz, dan = blocks(dgx, 3)
    dbr, dbz, dbn = blocks(dgh, 3)
    n_gates = gx.size
    gamma_x, gamma_h = p[:n_gates], p[n_gates:2 * n_gates]
    dgamma_x, dgamma_h = dp[:n_gates], dp[n_gates:2 * n_gates]
    dbeta_x, dbeta_h = dp[2 * n_gates:3 * n_gates], dp[3 * n_gates:]
    eps = like(gx[0], EPS)
    mx, rx = moments(gx, eps)
    mh, rh = moments(gh, eps)

    # Pass 1: dLoss/da into dgx and dLoss/db into dgh.
    for j in range(ds_next.size):
        b_n = _affine(ahn, hn, bhn, j, mh, rh)
        zr = _affine(axr, xr, bxr, j, mx, rx) + _affine(ahr, hr, bhr, j, mh, rh)
        zz = _affine(axz, xz, bxz, j, mx, rx) + _affine(ahz, hz, bhz, j, mh, rh)
        r, dr_act = ract(clamp(zr, clip))
        z, dz_act = ract(clamp(zz, clip))
        zn = _affine(axn, xn, bxn, j, mx, rx) + r * b_n
        n, dn_act = act(clamp(zn, clip))
        dh = ds_next[j]
        dzn = dh * (one(z) - z) * dn_act * clip_grad(zn, clip)
        dzz = dh * (s_prev[j] - n) * dz_act * clip_grad(zz, clip)
        dzr = dzn * b_n * dr_act * clip_grad(zr, clip)
        dar[j] = dzr
        dbr[j] = dzr
        daz[j] = dzz
        dbz[j] = dzz
        dan[j] = dzn
        dbn[j] = dzn * r
        ds_prev[j] = dh * z

    # Pass 2: the shifts, then the norms' backward in place.
    for k in range(n_gates):
        dbeta_x[k] += dgx[k]
        dbeta_h[k] += dgh[k]
    norm_backward(gx, mx, rx, gamma_x, dgx, dgamma_x, dgx)
    norm_backward(gh, mh, rh, gamma_h, dgh, dgamma_h, dgh)


gate = Gate(
    n_blocks=3,
    state_names=("h",),
    forward=forward,
    backward=backward,
    extra_params=(
        ExtraParam("ln_gamma_x", blocks=3, init="ones"),
        ExtraParam("ln_gamma_h", blocks=3, init="ones"),
        ExtraParam("ln_beta_x", blocks=3, init="zeros"),
        ExtraParam("ln_beta_h", blocks=3, init="zeros"),
    ),
    doc=__doc__,
    description="layer-normalised GRU (Ba et al. 2016), haste's LayerNormGRU",
)
