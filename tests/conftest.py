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
        missing = [name for name in ("torch", "onnxruntime", "distributed")
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise pytest.UsageError(f"CI=true but {missing} are not installed: parity tests would be skipped")


@pytest.fixture(params=["rows", "hidden-split"])
def tiling(request, monkeypatch):
    """Run a test under each tiling of the time loops (``lstm_numba.engine.tiling``).

    ``rows`` is what tiny test shapes get anyway; ``hidden-split`` applies
    ``tilings.hidden_split_settings()`` (hidden parts and GEMM blocks on any machine).
    """
    from tilings import hidden_split_settings

    if request.param == "hidden-split":
        for target, name, value in hidden_split_settings():
            monkeypatch.setattr(target, name, value)
    return request.param
