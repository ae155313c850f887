"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201): an LSTM whose
gates read only x_t, normalised so that the forget and input gates sum to one, with h its
only state. Gate order f, i, h~ (``weight_ih`` (3H, I), ``bias_ih`` (3H,)); no recurrent
weights.

    f_t = sigmoid(k_f)   i_t = sigmoid(k_i)   h~_t = g(k_h)       (k = W x_t + b; g: ``minimal``)
    f'_t = f_t / (f_t + i_t)   i'_t = i_t / (f_t + i_t)
    h_t = f'_t * h_{t-1} + i'_t * h~_t

Log space (the scan), with d = softplus(-k_f) - softplus(-k_i) = log i_t - log f_t:
log a_t = log f'_t = -softplus(d), log b_t = log i'_t + log g(k_h) = -softplus(-d) + log g(k_h).
(i'_t = sigmoid(d), f'_t = 1 - i'_t.) ``activation`` and ``recurrent_activation`` are not used;
``clip`` clamps the pre-activations.
"""

from lstm_numba_plugins.gates.minimal import g, log_g, softplus

from lstm_numba.contract import Gate, ScanForm, blocks, clamp, clip_grad, fast_sigmoid, one, pointwise


@pointwise
def _log_ratio(kf, ki):
    """d = log i - log f and dd/dk_f, dd/dk_i."""
    f = fast_sigmoid(kf)
    i = fast_sigmoid(ki)
    return softplus(-kf) - softplus(-ki), f - one(f), one(i) - i


@pointwise
def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
    xf, xi, xh = blocks(gx, 3)
    rf, ri, rh = blocks(gh, 3)  # zero in the engine (no recurrent weights); read as additive gates do
    for j in range(s_next.size):
        d = _log_ratio(clamp(xf[j] + rf[j], clip), clamp(xi[j] + ri[j], clip))[0]
        i_norm = fast_sigmoid(d)
        s_next[j] = (one(d) - i_norm) * s_prev[j] + i_norm * g(clamp(xh[j] + rh[j], clip))[0]


@pointwise
def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
    xf, xi, xh = blocks(gx, 3)
    rf, ri, rh = blocks(gh, 3)
    dkf, dki, dkh = blocks(dgx, 3)
    for j in range(ds_next.size):
        kf, ki, kh = xf[j] + rf[j], xi[j] + ri[j], xh[j] + rh[j]
        d, dd_dkf, dd_dki = _log_ratio(clamp(kf, clip), clamp(ki, clip))
        i_norm = fast_sigmoid(d)
        candidate, d_candidate = g(clamp(kh, clip))
        dh = ds_next[j]
        dd = dh * (candidate - s_prev[j]) * i_norm * (one(d) - i_norm)
        dkf[j] = dd * dd_dkf * clip_grad(kf, clip)
        dki[j] = dd * dd_dki * clip_grad(ki, clip)
        dkh[j] = dh * i_norm * d_candidate * clip_grad(kh, clip)
        ds_prev[j] = dh * (one(d) - i_norm)


@pointwise
def log_coefficients(gx, clip, log_a, log_b):
    kf, ki, kh = blocks(gx, 3)
    for j in range(log_a.size):
        d = _log_ratio(clamp(kf[j], clip), clamp(ki[j], clip))[0]
        log_a[j] = -softplus(d)
        log_b[j] = -softplus(-d) + log_g(clamp(kh[j], clip))[0]


@pointwise
def log_coefficients_backward(gx, clip, d_log_a, d_log_b, dgx):
    kf, ki, kh = blocks(gx, 3)
    dkf, dki, dkh = blocks(dgx, 3)
    for j in range(d_log_a.size):
        d, dd_dkf, dd_dki = _log_ratio(clamp(kf[j], clip), clamp(ki[j], clip))
        i_norm = fast_sigmoid(d)
        # d(-softplus(d))/dd = -i', d(-softplus(-d))/dd = f' = 1 - i'
        dd = d_log_b[j] * (one(d) - i_norm) - d_log_a[j] * i_norm
        dkf[j] = dd * dd_dkf * clip_grad(kf[j], clip)
        dki[j] = dd * dd_dki * clip_grad(ki[j], clip)
        dkh[j] = d_log_b[j] * log_g(clamp(kh[j], clip))[1] * clip_grad(kh[j], clip)


gate = Gate(
    n_blocks=3,
    state_names=("h",),
    forward=forward,
    backward=backward,
    elementwise=True,
    additive=True,
    recurrent=False,
    scan=ScanForm(log_coefficients, log_coefficients_backward),
    doc=__doc__,
    description="minLSTM, normalised f/i gates from x_t only, parallel scan (Feng et al. 2024, arXiv 2410.01201)",
)
