"""Pointwise helpers shared by the minimal RNNs (``mingru``, ``minlstm``; Feng et al. 2024,
"Were RNNs All We Needed?"): the paper's g() that keeps the candidate state positive, its
logarithm for the log-space scan, and softplus.

    g(x)     = x + 1/2 for x >= 0, sigmoid(x) for x < 0      (continuous at 0, g(x) > 0)
    log g(x) = log(x + 1/2) for x >= 0, -softplus(-x) for x < 0
"""

import numpy as np

from lstm_numba.contract import fast_exp, fast_log1p, fast_sigmoid, one, pointwise, zero


@pointwise
def half(x):
    return one(x) / (one(x) + one(x))


@pointwise
def softplus(x):
    """log(1 + exp(x)), stable for either sign."""
    return max(x, zero(x)) + fast_log1p(fast_exp(-abs(x)))


@pointwise
def g(x):
    """The paper's g(x) and dg/dx."""
    if x >= zero(x):
        return x + half(x), one(x)
    s = fast_sigmoid(x)
    return s, s * (one(x) - s)


@pointwise
def log_g(x):
    """log g(x) and d log g / dx."""
    if x >= zero(x):
        shifted = x + half(x)
        return np.log(shifted), one(x) / shifted
    return -softplus(-x), one(x) - fast_sigmoid(x)
