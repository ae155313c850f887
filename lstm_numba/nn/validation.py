"""Input checks for the public API: each failure names the argument, what was expected and
what was given, so that no Numba typing error or silent garbage reaches a user."""

from __future__ import annotations

import numpy as np

from lstm_numba.engine.kernels import arrays

SUPPORTED_DTYPES = ("float32", "float64")


def resolve_dtype(dtype) -> np.dtype:
    """``"float32"``/``"float64"`` (or the numpy equivalents) as a numpy dtype."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.name not in SUPPORTED_DTYPES:
        raise TypeError(f"dtype: expected one of {SUPPORTED_DTYPES}, got {dtype!r}")
    return resolved


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def float_array(name: str, value, shape_doc: str, ndim: int, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` with ``ndim`` dimensions, all finite.

    Float inputs of another precision are converted; integers, booleans, complex numbers
    and objects are refused, as are NaN and Inf.
    """
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array {shape_doc}, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {shape_doc}, got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=dtype)
    if not all_finite(array):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"{name}: contains NaN or Inf (first at index {where})")
    return array


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a contiguous float array is finite (one compiled pass)."""
    return arrays.count_non_finite(array.reshape(-1)) == 0


def expect_shape(name: str, array: np.ndarray, expected: tuple, meaning: str) -> None:
    if array.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} {meaning}, got {array.shape}")


def lengths_array(lengths, batch: int, steps: int, minimum: int = 1) -> np.ndarray:
    """Validate per-row sequence lengths: B integers in minimum..T (1..T unless a chunk of a
    stream, where a row may have no step)."""
    array = np.asarray(lengths)
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {array.dtype}")
    if array.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},) (one length per batch row), got {array.shape}")
    bad = np.flatnonzero((array < minimum) | (array > steps))
    if bad.size:
        raise ValueError(f"lengths: values must be in {minimum}..T={steps}, got {int(array[bad[0]])} at index "
                         f"{int(bad[0])}")
    return np.ascontiguousarray(array, dtype=np.int64)

