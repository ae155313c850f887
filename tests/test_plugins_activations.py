"""Every built-in activation against the NumPy formulas of ``naive_gates`` (ONNX definitions),
its derivative, float32 staying float32, and ``ln.check_plugin``. No kernel is compiled
here: the activations' jitted functions are called directly (each a fraction of a second)."""

from __future__ import annotations

import naive_gates as ng
import numpy as np
import pytest
from numba import types

import lstm_numba as ln
from lstm_numba import registry

ACTIVATIONS = sorted(ng.ACTIVATIONS)

#: Defaults: ONNX's (LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0; onnxruntime's table in
#: rnn_helpers.cc). ScaledTanh has no ONNX default (onnxruntime uses 0, 0: the output is 0);
#: ours is alpha = beta = 1, i.e. plain tanh. Export it with explicit alpha and beta.
DEFAULTS = {"hard_sigmoid": (0.2, 0.5), "leaky_relu": (0.01, 0.0), "elu": (1.0, 0.0), "scaled_tanh": (1.0, 1.0)}
OTHER_PARAMS = {"hard_sigmoid": (0.3, 0.4), "leaky_relu": (0.2, 0.0), "elu": (0.6, 0.0), "scaled_tanh": (1.7, 0.66)}


def _points():
    """Random points plus a grid, none within 1e-3 of a kink (0 and hard_sigmoid's corners)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([np.linspace(-8, 8, 161) + 0.0123, rng.normal(0, 2, 100), [-40.0, -15.0, 15.0, 40.0]])
    corners = [0.0]
    for a, b in (DEFAULTS["hard_sigmoid"], OTHER_PARAMS["hard_sigmoid"]):
        corners += [-b / a, (1 - b) / a]
    return x[np.min(np.abs(x[:, None] - np.array(corners)[None, :]), axis=1) > 1e-3]


X = _points()


def _eval(fn, *args):
    return np.array([fn(*a) for a in zip(*args)], dtype=np.float64)


def _params(name):
    act = registry.get_activation(name).obj
    return [(act.alpha, act.beta)] + ([OTHER_PARAMS[name]] if name in OTHER_PARAMS else [])


def test_all_builtin_activations_registered():
    listed = {e.name: e for e in ln.plugins("activation") if e.distribution == "lstm-numba"}
    assert set(ACTIVATIONS) <= set(listed)
    assert all(listed[name].status == "ok" for name in ACTIVATIONS)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_default_parameters(name):
    act = registry.get_activation(name).obj
    assert (act.alpha, act.beta) == DEFAULTS.get(name, (0.0, 0.0))
    assert (ng.Act(name).alpha, ng.Act(name).beta) == (act.alpha, act.beta)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_values_and_derivatives_float64(name):
    act = registry.get_activation(name).obj
    for alpha, beta in _params(name):
        ref = ng.Act(name, alpha, beta)
        n = X.size
        a, b = np.full(n, alpha), np.full(n, beta)
        y = _eval(act.forward, X, a, b)
        np.testing.assert_allclose(y, ref(X), rtol=1e-13, atol=1e-15, err_msg=f"{name} alpha={alpha} beta={beta}")
        d = _eval(act.derivative, X, y, a, b)
        np.testing.assert_allclose(d, ref.grad(X), rtol=1e-12, atol=1e-15,
                                   err_msg=f"{name}' alpha={alpha} beta={beta}")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_float32_stays_float32_and_is_accurate(name):
    act = registry.get_activation(name).obj
    f32 = np.float32
    alpha, beta = f32(act.alpha), f32(act.beta)
    x = X.astype(f32)
    n = x.size
    y = _eval(act.forward, x, [alpha] * n, [beta] * n)
    d = _eval(act.derivative, x, y.astype(f32), [alpha] * n, [beta] * n)
    sig = (types.float32,) * 3
    assert act.forward.overloads[sig].signature.return_type == types.float32
    assert act.derivative.overloads[(types.float32,) * 4].signature.return_type == types.float32
    ref = ng.Act(name, float(alpha), float(beta))
    x64 = x.astype(np.float64)
    # fast_tanh/fast_sigmoid/fast_exp are rational approximations in float32 (4e-7 absolute)
    np.testing.assert_allclose(y, ref(x64), rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(d, ref.grad(x64), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_check_plugin_passes_builtin_activation(name):
    report = ln.check_plugin(name)
    assert report.ok, str(report)
    assert (report.kind, report.distribution, report.version) == ("activation", "lstm-numba", ln.__version__)
    assert [c.name for c in report.checks] == ["load", "compile float64", "compile float32", "derivative",
                                               "float32 accuracy"]


def test_kink_conventions():
    """At the kinks themselves the derivative takes one side: documented, and what the
    NumPy references use (relu'(0) = 0, leaky_relu'(0) = 1, hard_sigmoid' = 0 at its corners)."""
    get = lambda name: registry.get_activation(name).obj  # noqa: E731
    assert get("relu").derivative(0.0, 0.0, 0.0, 0.0) == 0.0
    assert get("leaky_relu").derivative(0.0, 0.0, 0.01, 0.0) == 1.0
    assert get("hard_sigmoid").derivative(-2.5, 0.0, 0.2, 0.5) == 0.0
    assert get("hard_sigmoid").derivative(2.5, 1.0, 0.2, 0.5) == 0.0
