"""The CTC loss and its gradient (Graves et al., 2006), compiled: log-space
forward-backward over the blank-extended label sequence, in parallel over the batch.

Each batch row is independent, so the result does not depend on the thread count. All
arithmetic runs in float64 whatever the logits' dtype.
"""

import numpy as np
from numba import njit, prange

from lstm_numba.config import FASTMATH


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _log_add(a, b):
    """``log(exp(a) + exp(b))`` without overflow; -inf stays -inf."""
    if a == -np.inf:
        return b
    if b == -np.inf:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _row_log_softmax(logits, b, steps, log_probs):
    """log_probs[t, :] = log_softmax(logits[t, b, :]) for t < steps."""
    n_classes = logits.shape[2]
    for t in range(steps):
        top = logits[t, b, 0]
        for c in range(1, n_classes):
            top = max(top, logits[t, b, c])
        total = 0.0
        for c in range(n_classes):
            total += np.exp(logits[t, b, c] - top)
        shift = top + np.log(total)
        for c in range(n_classes):
            log_probs[t, c] = logits[t, b, c] - shift


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _row_alpha_beta(log_probs, labels, steps, alpha, beta):
    """Forward (alpha) and backward (beta) variables in log space, both including the
    emission at their own step; returns the row's negative log-likelihood."""
    n_states = labels.size
    alpha[:steps, :n_states] = -np.inf
    beta[:steps, :n_states] = -np.inf
    alpha[0, 0] = log_probs[0, labels[0]]
    if n_states > 1:
        alpha[0, 1] = log_probs[0, labels[1]]
    for t in range(1, steps):
        for s in range(n_states):
            acc = alpha[t - 1, s]
            if s >= 1:
                acc = _log_add(acc, alpha[t - 1, s - 1])
            if s >= 2 and labels[s] != labels[0] and labels[s] != labels[s - 2]:
                acc = _log_add(acc, alpha[t - 1, s - 2])
            alpha[t, s] = acc + log_probs[t, labels[s]]
    last = steps - 1
    beta[last, n_states - 1] = log_probs[last, labels[n_states - 1]]
    if n_states > 1:
        beta[last, n_states - 2] = log_probs[last, labels[n_states - 2]]
    for t in range(last - 1, -1, -1):
        for s in range(n_states):
            acc = beta[t + 1, s]
            if s + 1 < n_states:
                acc = _log_add(acc, beta[t + 1, s + 1])
            if s + 2 < n_states and labels[s] != labels[0] and labels[s] != labels[s + 2]:
                acc = _log_add(acc, beta[t + 1, s + 2])
            beta[t, s] = acc + log_probs[t, labels[s]]
    end = alpha[last, n_states - 1]
    if n_states > 1:
        end = _log_add(end, alpha[last, n_states - 2])
    return -end


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH, parallel=True)
def ctc_loss_grad(logits, targets, target_starts, target_lengths, input_lengths, blank,
                  grad_scale, zero_infinity, losses, dlogits):
    """Per-row CTC negative log-likelihood and its gradient with respect to the logits.

    logits          (T, B, C)  float32 or float64, unnormalised (log_softmax is applied here)
    targets         (N,)       int64, all rows' labels concatenated, none equal to ``blank``
    target_starts   (B,)       int64, where row b's labels begin in ``targets``
    target_lengths  (B,)       int64, row b's label count (0 allowed)
    input_lengths   (B,)       int64, row b's valid steps, 1 <= length <= T
    blank           int, the blank class
    grad_scale      (B,)       float64, factor applied to row b's gradient (the reduction)
    zero_infinity   bool: an infinite row loss becomes 0 with a zero gradient
    losses          (B,)       float64, out: the row losses
    dlogits         (T, B, C)  logits' dtype, out: ``grad_scale[b] * (softmax - gamma)``
                               on valid steps, zero on padded steps

    ``gamma[t, c]`` is the posterior that step t emits class c. The gradient is the one
    torch's ``CTCLoss`` gives once taken back through ``log_softmax``.
    """
    steps_max, batch, n_classes = logits.shape
    for b in prange(batch):
        steps = input_lengths[b]
        n_states = 2 * target_lengths[b] + 1
        labels = np.full(n_states, blank, dtype=np.int64)
        for k in range(target_lengths[b]):
            labels[2 * k + 1] = targets[target_starts[b] + k]
        log_probs = np.empty((steps, n_classes))
        alpha = np.empty((steps, n_states))
        beta = np.empty((steps, n_states))
        _row_log_softmax(logits, b, steps, log_probs)
        nll = _row_alpha_beta(log_probs, labels, steps, alpha, beta)
        dlogits[:, b, :] = 0.0
        if zero_infinity and nll == np.inf:
            losses[b] = 0.0
            continue
        losses[b] = nll
        posterior = np.empty(n_classes)
        for t in range(steps):
            posterior[:] = -np.inf
            for s in range(n_states):
                c = labels[s]
                posterior[c] = _log_add(posterior[c], alpha[t, s] + beta[t, s] - log_probs[t, c])
            for c in range(n_classes):
                dlogits[t, b, c] = grad_scale[b] * (
                    np.exp(log_probs[t, c]) - np.exp(posterior[c] + nll))
