"""Input checks for the public API: each failure names the argument, what was expected and
what was given, so that no Numba typing error or silent garbage reaches a user."""

from __future__ import annotations

import math
import numbers

import numpy as np

from lstm_numba.engine.kernels import arrays

SUPPORTED_DTYPES = ("float32", "float64")


def resolve_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``"float32"``/``"float64"`` (or the numpy equivalents) as a numpy dtype.

    None is refused (``np.dtype(None)`` would be float64), and so are non-native byte
    orders (``">f4"`` on a little-endian machine): the kernels compile for native floats.
    """
    resolved = None
    if dtype is not None:
        try:
            resolved = np.dtype(dtype)
        except (TypeError, ValueError):
            resolved = None
    if resolved is None or resolved.name not in SUPPORTED_DTYPES:
        raise TypeError(f"{name}: expected one of {SUPPORTED_DTYPES}, got {dtype!r}")
    if not resolved.isnative:
        raise TypeError(f"{name}: expected one of {SUPPORTED_DTYPES} in the machine's native byte order, "
                        f"got {dtype!r}")
    return np.dtype(resolved.name)


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _real(name: str, value, expected: str) -> float:
    """``value`` as a float; a TypeError naming ``name`` unless it is a real number (no
    strings, booleans or None)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


def probability(name: str, value) -> float:
    """A number in [0, 1) (dropout)."""
    expected = "a probability in [0, 1)"
    number = _real(name, value, expected)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def positive_threshold(name: str, value) -> float:
    """A positive number, or None for "off" (returned as inf)."""
    if value is None:
        return math.inf
    expected = "a positive threshold or None"
    number = _real(name, value, expected)
    if not number > 0:  # NaN fails too
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def finite_number(name: str, value) -> float:
    """A finite real number (activation parameters)."""
    expected = "a finite number or None"
    number = _real(name, value, expected)
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return number


def seed(name: str, value):
    """None or an integer >= 0 (what ``numpy.random.default_rng`` accepts as one seed)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected None or an integer >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected None or an integer >= 0, got {value!r}")
    return int(value)


def plugin_name(name: str, value) -> str:
    """A plugin name, ``"name"`` or ``"distribution:name"``: a non-empty string."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a plugin name (a string), got {value!r}")
    if not value.strip() or not value.rpartition(":")[2].strip():
        raise ValueError(f"{name}: expected a plugin name, got {value!r}")
    return value


def float_array(name: str, value, shape_doc: str, ndim: int, dtype: np.dtype) -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` with ``ndim`` dimensions, all finite.

    Float inputs of another precision are converted; integers, booleans, complex numbers
    and objects are refused, as are NaN and Inf.
    """
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists, objects NumPy cannot convert
        raise ValueError(f"{name}: expected a {ndim}-D floating-point array {shape_doc}, got a "
                         f"{type(value).__name__} NumPy cannot convert ({_first_line(exc)})") from None
    if array.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point array {shape_doc}, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {shape_doc}, got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=dtype)
    if not all_finite(array):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"{name}: contains NaN or Inf (first at index {where})")
    return array


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def all_finite(array: np.ndarray) -> bool:
    """Whether every value of a contiguous float array is finite (one compiled pass)."""
    return arrays.count_non_finite(array.reshape(-1)) == 0


def expect_shape(name: str, array: np.ndarray, expected: tuple, meaning: str) -> None:
    if array.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} {meaning}, got {array.shape}")


def lengths_array(lengths, batch: int, steps: int, minimum: int = 1) -> np.ndarray:
    """Validate per-row sequence lengths: B integers in minimum..T (1..T unless a chunk of a
    stream, where a row may have no step)."""
    try:
        array = np.asarray(lengths)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"lengths: expected {batch} integers in {minimum}..T={steps}, got a {type(lengths).__name__} "
                         f"NumPy cannot convert ({_first_line(exc)})") from None
    if array.dtype.kind not in "iu":
        raise TypeError(f"lengths: expected integers, got dtype {array.dtype}")
    if array.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},) (one length per batch row), got {array.shape}")
    bad = np.flatnonzero((array < minimum) | (array > steps))
    if bad.size:
        raise ValueError(f"lengths: values must be in {minimum}..T={steps}, got {int(array[bad[0]])} at index "
                         f"{int(bad[0])}")
    return np.ascontiguousarray(array, dtype=np.int64)

