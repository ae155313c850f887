"""Layer-normalisation helpers shared by the ``layernorm_lstm`` and ``layernorm_gru`` gates.

``LN(v) = (v - mean(v)) / sqrt(var(v) + EPS)`` over a whole vector (haste's ``LayerNorm``,
epsilon 1e-5, biased variance). Everything stays in the kernel's float type: a Python float
literal or an integer count in the arithmetic would promote float32 to float64, so
constants go through :func:`like`.
"""

import numpy as np
from numba import types
from numba.extending import overload

from lstm_numba.contract import one, pointwise, zero

EPS = 1e-5


def like(x, value):
    """``value`` converted to the float type of ``x`` (inside jitted code)."""
    return float(value)


@overload(like, inline="always")
def _like_impl(x, value):
    if isinstance(x, types.Float):
        convert = np.float32 if x == types.float32 else np.float64
        return lambda x, value: convert(value)
    return None


@pointwise
def moments(v, eps):
    """Mean and 1/sqrt(var + eps) of the vector ``v`` (two passes, for accuracy)."""
    n = like(eps, v.size)
    mean = zero(eps)
    for k in range(v.size):
        mean += v[k]
    mean = mean / n
    var = zero(eps)
    for k in range(v.size):
        d = v[k] - mean
        var += d * d
    return mean, one(eps) / np.sqrt(var / n + eps)


@pointwise
def norm_backward(v, mean, rstd, gamma, dz, dgamma, dv):
    """Backward of ``z = gamma * LN(v) (+ beta)`` over the whole vector ``v``.

    ``dz`` holds dLoss/dz; adds dz * LN(v) to ``dgamma`` and writes dLoss/dv into ``dv``
    (which may be ``dz`` itself): ``rstd * (d - mean(d) - v_hat * mean(d * v_hat))`` with
    ``d = gamma * dz``.
    """
    s1 = zero(mean)
    s2 = zero(mean)
    for k in range(v.size):
        v_hat = (v[k] - mean) * rstd
        d = dz[k] * gamma[k]
        dgamma[k] += dz[k] * v_hat
        s1 += d
        s2 += d * v_hat
    inv_n = one(mean) / like(mean, v.size)
    s1 *= inv_n
    s2 *= inv_n
    for k in range(v.size):
        dv[k] = (dz[k] * gamma[k] - s1 - (v[k] - mean) * rstd * s2) * rstd
