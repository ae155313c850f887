"""The chunked parallel scan of the linear recurrence h_t = a_t h_{t-1} + b_t (a_t, b_t > 0),
forward in log space and backward as a reverse linear scan; gate-independent (the gate's
log coefficients come from the generated ``scan_coefficients``).

Shapes: T steps, B batch rows, H hidden units, C = ceil(T / chunk) time chunks. Each pass
runs in parallel over (chunk, batch row) tasks and, inside a task, over the H units (the
contiguous axis); the carry between chunks is a short sequential pass over C. The chunk
length is chosen from T alone (``engine.tiling.scan_chunk_steps``), never from the thread
count, and each task's arithmetic is fixed, so results are bitwise equal whatever the
number of threads.

Forward, per unit: with zero initial state, log h_t = logaddexp(log a_t + log h_{t-1}, log b_t)
(the log-sum-exp recursion; equal to a*_t + logcumsumexp(log b - a*)_t with a*_t the cumulative
sum of log a).
The initial state, of either sign, enters linearly: h_t = exp(log h_t) + exp(a*_t) h_0.
"""

import numpy as np
from numba import njit, prange

from lstm_numba.config import FASTMATH
from lstm_numba.contract import fast_exp, fast_log1p


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def logaddexp(x, y):
    """log(exp(x) + exp(y)), -inf when both are -inf; the
    select on ``low`` (not a branch) keeps the loop free of branches, and the float32
    ``fast_exp`` of a non-positive argument with ``fast_log1p`` (no libm calls) lets LLVM
    vectorise it."""
    high, low = max(x, y), min(x, y)
    summed = high + fast_log1p(fast_exp(low - high))
    return high if low == -np.inf else summed


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def log_scan_forward(log_a, log_b, h0, chunk, cum_a, log_h, carry_a, carry_h, h):
    """h (T, B, H) out: h_t = a_t h_{t-1} + b_t from h0 (B, H), given log_a, log_b (T, B, H).

    Scratch: cum_a, log_h (T, B, H): within each chunk, the cumulative log a and the log of
    the scan from a zero state at the chunk's start; carry_a, carry_h (C, B, H): the sum of
    log a over all steps before chunk c and the log of the zero-state scan at its start.
    """
    steps, batch, hidden = log_a.shape
    n_chunks = carry_a.shape[0]
    for task in prange(n_chunks * batch):  # 1: each chunk on its own
        c, b = task // batch, task % batch
        t0 = c * chunk
        for j in range(hidden):
            cum_a[t0, b, j] = log_a[t0, b, j]
            log_h[t0, b, j] = log_b[t0, b, j]
        for t in range(t0 + 1, min(steps, t0 + chunk)):
            for j in range(hidden):
                cum_a[t, b, j] = cum_a[t - 1, b, j] + log_a[t, b, j]
                log_h[t, b, j] = logaddexp(log_h[t - 1, b, j] + log_a[t, b, j], log_b[t, b, j])
    for b in prange(batch):  # 2: the carry from chunk to chunk
        for j in range(hidden):
            carry_a[0, b, j] = 0.0
            carry_h[0, b, j] = -np.inf
        for c in range(1, n_chunks):
            last = c * chunk - 1
            for j in range(hidden):
                carry_a[c, b, j] = carry_a[c - 1, b, j] + cum_a[last, b, j]
                carry_h[c, b, j] = logaddexp(carry_h[c - 1, b, j] + cum_a[last, b, j], log_h[last, b, j])
    for task in prange(n_chunks * batch):  # 3: each chunk's steps from its carry
        c, b = task // batch, task % batch
        for t in range(c * chunk, min(steps, (c + 1) * chunk)):
            for j in range(hidden):
                from_zero = logaddexp(carry_h[c, b, j] + cum_a[t, b, j], log_h[t, b, j])
                h[t, b, j] = np.exp(from_zero) + fast_exp(carry_a[c, b, j] + cum_a[t, b, j]) * h0[b, j]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def linear_scan_backward(log_a, log_b, h, h0, dh, chunk, prod, local, carry, d_log_a, d_log_b, dh0):
    """Gradients of the scan: with g_t = dLoss/dh_t in full, g_t = dh_t + a_{t+1} g_{t+1}
    (a reverse linear scan), d_log_a = g_t a_t h_{t-1}, d_log_b = g_t b_t, dh0 = a_0 g_0.

    log_a, log_b, h (T, B, H) as forward computed them; h0 (B, H); dh (T, B, H) the direct
    gradients (dLoss/dy_t, plus the final state's at T - 1); d_log_a, d_log_b (T, B, H) and
    dh0 (B, H) out. Scratch: prod, local (T, B, H): within each chunk, the product of a over
    the chunk's later steps and the reverse scan from a zero gradient at its end; carry
    (C, B, H): a_{t1} g_{t1} from the first step t1 of the next chunk (0 for the last).
    """
    steps, batch, hidden = log_a.shape
    n_chunks = carry.shape[0]
    for task in prange(n_chunks * batch):  # 1: each chunk on its own, from its end
        c, b = task // batch, task % batch
        t0, t1 = c * chunk, min(steps, (c + 1) * chunk)
        for j in range(hidden):
            prod[t1 - 1, b, j] = 1.0
            local[t1 - 1, b, j] = dh[t1 - 1, b, j]
        for t in range(t1 - 2, t0 - 1, -1):
            for j in range(hidden):
                a_next = fast_exp(log_a[t + 1, b, j])
                prod[t, b, j] = prod[t + 1, b, j] * a_next
                local[t, b, j] = dh[t, b, j] + a_next * local[t + 1, b, j]
    for b in prange(batch):  # 2: the carry, from the last chunk back
        for j in range(hidden):
            carry[n_chunks - 1, b, j] = 0.0
        for c in range(n_chunks - 2, -1, -1):
            first = (c + 1) * chunk
            for j in range(hidden):
                g_first = local[first, b, j] + prod[first, b, j] * carry[c + 1, b, j]
                carry[c, b, j] = fast_exp(log_a[first, b, j]) * g_first
    for task in prange(n_chunks * batch):  # 3: each step's gradient from its chunk's carry
        c, b = task // batch, task % batch
        for t in range(c * chunk, min(steps, (c + 1) * chunk)):
            for j in range(hidden):
                g = local[t, b, j] + prod[t, b, j] * carry[c, b, j]
                a = fast_exp(log_a[t, b, j])
                h_prev = h0[b, j] if t == 0 else h[t - 1, b, j]
                d_log_a[t, b, j] = g * a * h_prev
                d_log_b[t, b, j] = g * np.exp(log_b[t, b, j])
                if t == 0:
                    dh0[b, j] = g * a
