"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201): a GRU whose
gates read only x_t, so that the recurrence is linear in h and trains as a parallel scan.
Gate order z, h~ (``weight_ih`` (2H, I), ``bias_ih`` (2H,)); no recurrent weights.

    z_t = sigmoid(k_z)          k_z = W_z x_t + b_z
    h~_t = g(k_h)               k_h = W_h x_t + b_h   (g: see ``minimal``)
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

Log space (the scan): log a_t = -softplus(k_z), log b_t = -softplus(-k_z) + log g(k_h).
``activation`` and ``recurrent_activation`` are not used (the paper fixes sigmoid and g);
``clip`` clamps the pre-activations.
"""

from lstm_numba_plugins.gates.minimal import g, log_g, softplus

from lstm_numba.contract import Gate, ScanForm, blocks, clamp, clip_grad, fast_sigmoid, one, pointwise


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xz, xh = blocks(gx, 2)
    rz, rh = blocks(gh, 2)  # zero in the engine (no recurrent weights); read as additive gates do
    for j in range(s_next.size):
        z = fast_sigmoid(clamp(xz[j] + rz[j], clip))
        candidate = g(clamp(xh[j] + rh[j], clip))[0]
        s_next[j] = (one(z) - z) * s_prev[j] + z * candidate


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xz, xh = blocks(gx, 2)
    rz, rh = blocks(gh, 2)
    dkz, dkh = blocks(dgx, 2)
    for j in range(ds_next.size):
        kz, kh = xz[j] + rz[j], xh[j] + rh[j]
        z = fast_sigmoid(clamp(kz, clip))
        candidate, d_candidate = g(clamp(kh, clip))
        dh = ds_next[j]
        dkz[j] = dh * (candidate - s_prev[j]) * z * (one(z) - z) * clip_grad(kz, clip)
        dkh[j] = dh * z * d_candidate * clip_grad(kh, clip)
        ds_prev[j] = dh * (one(z) - z)


@pointwise
def log_coefficients(gx, clip, log_a, log_b):
    kz, kh = blocks(gx, 2)
    for j in range(log_a.size):
        k = clamp(kz[j], clip)
        log_a[j] = -softplus(k)
        log_b[j] = -softplus(-k) + log_g(clamp(kh[j], clip))[0]


@pointwise
def log_coefficients_backward(gx, clip, d_log_a, d_log_b, dgx):
    kz, kh = blocks(gx, 2)
    dkz, dkh = blocks(dgx, 2)
    for j in range(d_log_a.size):
        z = fast_sigmoid(clamp(kz[j], clip))
        # d(-softplus(k))/dk = -z, d(-softplus(-k))/dk = 1 - z
        dkz[j] = (d_log_b[j] * (one(z) - z) - d_log_a[j] * z) * clip_grad(kz[j], clip)
        dkh[j] = d_log_b[j] * log_g(clamp(kh[j], clip))[1] * clip_grad(kh[j], clip)


gate = Gate(
    n_blocks=2,
    state_names=("h",),
    forward=forward,
    backward=backward,
    elementwise=True,
    additive=True,
    recurrent=False,
    scan=ScanForm(log_coefficients, log_coefficients_backward),
    doc=__doc__,
    description="minGRU, gates from x_t only, trained as a parallel scan (Feng et al. 2024, arXiv 2410.01201)",
)
