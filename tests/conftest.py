"""Shared fixtures. Tests compare against independent references only: plain-NumPy code
written from the equations, float64 finite differences, and PyTorch when installed."""

import numpy as np
import pytest


def max_rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected| (0 when both are zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.abs(expected).max(initial=0.0)
    diff = np.abs(actual - expected).max(initial=0.0)
    return diff / scale if scale > 0 else diff


def central_difference(loss, array, index, step):
    """(loss(array[index] + step) - loss(array[index] - step)) / (2 step), perturbing in place."""
    saved = array[index]
    array[index] = saved + step
    plus = loss()
    array[index] = saved - step
    minus = loss()
    array[index] = saved
    return (plus - minus) / (2 * step)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_sessionstart(session):
    """In CI the references must be installed: a skipped parity test is not a pass."""
    import importlib.util
    import os

    if os.environ.get("CI"):
        missing = [name for name in ("torch", "onnxruntime") if importlib.util.find_spec(name) is None]
        if missing:
            raise pytest.UsageError(f"CI=true but {missing} are not installed: parity tests would be skipped")


@pytest.fixture(params=["rows", "hidden-split"])
def tiling(request, monkeypatch):
    """Run a test under each tiling of the time loops (``lstm_numba.engine.tiling``).

    ``rows`` is what tiny test shapes get anyway. ``hidden-split`` lowers the thresholds
    and pretends to have 4 cores, so elementwise gates split any even H into 2 or 4 parts
    (down to one unit each) whatever this machine has; it also pretends that the BLAS has
    OpenBLAS's small-matrix kernel and lowers its limits, so that the recurrent GEMMs run
    in blocks of 4 columns and a split depth (``lstm_numba.kernels.blas.gemm_blocks``).
    """
    from lstm_numba import engine
    from lstm_numba.kernels import blas

    if request.param == "hidden-split":
        monkeypatch.setattr(engine, "HIDDEN_SPLIT_MIN_FLOPS", 0)
        monkeypatch.setattr(engine, "HIDDEN_SPLIT_MIN_UNITS", 1)
        monkeypatch.setattr(engine.numba.config, "NUMBA_DEFAULT_NUM_THREADS", 4)
        monkeypatch.setattr(engine, "small_kernel_available", lambda: True)
        monkeypatch.setattr(blas, "SMALL_KERNEL_MAX_MNK", 64)
        monkeypatch.setattr(blas, "SMALL_GEMM_COLUMNS", 4)
    return request.param
