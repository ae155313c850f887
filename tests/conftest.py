"""Shared fixtures. Tests compare against independent references only: plain-NumPy code
written from the equations, float64 finite differences, and PyTorch when installed."""

import os

import numpy as np
import pytest

# The tests run in one process per core (pytest-xdist): each process, and the training
# processes its tests start, keeps Numba to one thread so that they do not oversubscribe
# the cores. Results do not depend on the thread count (test_lstm_behaviour checks 1, 2
# and 3 threads in processes of their own).
if os.environ.get("PYTEST_XDIST_WORKER") and "NUMBA_NUM_THREADS" not in os.environ:
    os.environ["NUMBA_NUM_THREADS"] = "1"


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


def worst_gradient_errors(loss, targets: dict, analytic: dict, step: float) -> dict:
    """Per name, the largest error of ``analytic[name]`` against central differences of
    ``loss`` over every element of ``targets[name]`` (relative, with a floor of 1% of the
    largest analytic value)."""
    worst = {}
    for name, array in targets.items():
        fd = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            fd[index] = central_difference(loss, array, index, step)
        an = analytic[name]
        scale = max(np.abs(an).max(), 1e-3)
        worst[name] = float(np.max(np.abs(fd - an) / (np.abs(an) + 1e-2 * scale)))
    return worst


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_sessionstart(session):
    """In CI the references must be installed: a skipped parity test is not a pass."""
    import importlib.util

    if os.environ.get("CI"):
        missing = [name for name in ("torch", "onnxruntime", "safetensors", "h5py", "keras", "matplotlib",
                                     "distributed")
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


#: Tests that compile kernels no other default test compiles (each combination of gate,
#: activations and dtype costs 10-20 s on a 2-core machine) run only under ``-m slow``;
#: CI runs both sets (.ci/run). The default run still covers every gate, both dtypes and
#: both tilings (the hidden split with the LSTM).
SLOW_TESTS = {
    "test_plugins_thirdparty.py::test_check_plugin_passes",      # the example plugin's full check
    "test_cli_plugins.py::test_check_lstm_passes",               # the CLI over check_plugin (tested directly)
    "test_cli_profile.py::test_peephole_has_no_torch_equivalent",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = f"{item.path.name}::{item.originalname}"
        params = item.callspec.params if hasattr(item, "callspec") else {}
        gate = params.get("gate", "lstm")
        hidden_split_variant = params.get("tiling") == "hidden-split" and gate != "lstm"
        other_activations = item.originalname == "test_matches_reference_nondefault_activations" and gate != "lstm"
        if name in SLOW_TESTS or hidden_split_variant or other_activations:
            item.add_marker(pytest.mark.slow)
