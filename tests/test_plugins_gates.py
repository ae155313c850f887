"""Every built-in gate against the plain-NumPy references of ``naive_gates`` (written from the
equations), forward and backward, and against float64 finite differences through the whole
``ln.LSTM`` layer; plus ``ln.check_plugin`` for each.

Compile budget: each distinct (gate, activations with their alpha/beta, dtype) costs a
Numba compile the first time (then it is in the disk cache), so the cases below reuse a
small set of combinations: every gate with tanh/sigmoid in float32 and float64, one
non-default activation pair per gate in float64, and lstm with softsign/hard_sigmoid in
float32 (the combination ``benchmarks/bench_plugins.py`` and the ONNX tests use too).
``clip`` is a runtime argument and costs nothing extra.
"""

from __future__ import annotations

import naive_gates as ng
import numpy as np
import pytest
from conftest import max_rel_err, worst_gradient_errors

import lstm_numba as ln

GATES = ["lstm", "peephole", "coupled", "gru", "slstm"]
#: The built-in gates that came later: their own test modules compare them with references;
#: the contract checks here compile each once more, so they run in the slow pass.
LATER_GATES = ["indrnn", "mingru", "minlstm", "layernorm_gru", "layernorm_lstm"]

#: Non-default activations per gate (float64). Together they cover hard_sigmoid with its
#: own alpha/beta and with the defaults, leaky_relu with an alpha, elu, softsign, softplus.
NONDEFAULT = {
    "lstm": dict(activation="leaky_relu", activation_alpha=0.2, recurrent_activation="hard_sigmoid",
                 recurrent_activation_alpha=0.25, recurrent_activation_beta=0.45),
    "peephole": dict(activation="softsign", recurrent_activation="hard_sigmoid"),
    "coupled": dict(activation="elu", activation_alpha=0.7, recurrent_activation="sigmoid"),
    "gru": dict(activation="softplus", recurrent_activation="hard_sigmoid", recurrent_activation_alpha=0.3,
                recurrent_activation_beta=0.4),
    "slstm": dict(activation="softsign", recurrent_activation="hard_sigmoid"),
}
#: The float32 non-default combination shared with the benchmark and the ONNX tests.
BENCH_ACTIVATIONS = dict(activation="softsign", recurrent_activation="hard_sigmoid")

T, B, I, H, LAYERS = 5, 3, 3, 4, 2
LENGTHS = np.array([5, 2, 4])


def _pack(array, n_state):
    return array[0] if n_state == 1 else tuple(array)


def _unpack(state, n_state):
    return np.asarray(state)[None] if n_state == 1 else np.stack(state)


def compare_with_reference(gate, dtype, clip=None, seed=0, bidirectional=True, lengths=LENGTHS,
                           batch_first=False, empty_state=False, **activations):
    """Run ln.LSTM and the NumPy reference on the same data; return the max relative errors.

    ``empty_state``: the layer gets no initial state (zeros), the reference zeros.
    """
    rnn = ln.LSTM(I, H, num_layers=LAYERS, bidirectional=bidirectional, dtype=dtype, seed=seed, gate=gate,
                  clip=clip, batch_first=batch_first, **activations)
    n_state, dirs = len(rnn.state_names), 2 if bidirectional else 1
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(size=(T, B, I)).astype(dtype)
    state0 = ng.random_state(gate, rng, (n_state, LAYERS * dirs, B, H)).astype(dtype)
    if empty_state:
        state0[...] = 0.0
    dy = rng.normal(size=(T, B, dirs * H)).astype(dtype)
    dstate = rng.normal(size=state0.shape).astype(dtype)

    swap = (lambda a: np.ascontiguousarray(a.transpose(1, 0, 2))) if batch_first else (lambda a: a)
    y, final = rnn(swap(x), None if empty_state else _pack(state0, n_state), lengths=lengths)
    grads = rnn.backward(swap(dy), _pack(dstate, n_state))

    ref = ng.NaiveRNN(gate, rnn.state_dict(), LAYERS, bidirectional,
                      ng.config(clip=clip, **activations))
    y_ref, final_ref = ref.forward(x, state0, lengths)
    g_ref, dx_ref, dstate_ref = ref.backward(dy, dstate)

    assert y.dtype == np.dtype(dtype) and grads.x.dtype == np.dtype(dtype)
    assert set(grads.params) == set(g_ref) == set(rnn.state_dict())
    errors = {
        "y": max_rel_err(swap(y), y_ref),
        "final state": max_rel_err(_unpack(final, n_state), final_ref),
        "dx": max_rel_err(swap(grads.x), dx_ref),
        "dstate0": max_rel_err(_unpack(grads.state, n_state), dstate_ref),
    }
    errors.update({f"d{k}": max_rel_err(grads.params[k], g_ref[k]) for k in g_ref})
    if lengths is not None:  # padded outputs are exactly zero
        for b, length in enumerate(lengths):
            assert not swap(y)[length:, b].any()
    return errors


def assert_small(errors, tol):
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v <= tol}
    assert not bad, f"errors above {tol:g}: {bad}"


@pytest.mark.parametrize("clip", [None, 0.5], ids=["noclip", "clip"])
@pytest.mark.parametrize("gate", GATES)
def test_matches_reference_float64(gate, clip, tiling):
    assert_small(compare_with_reference(gate, "float64", clip=clip), 1e-12)


@pytest.mark.parametrize("clip", [None, 0.5], ids=["noclip", "clip"])
@pytest.mark.parametrize("gate", GATES)
def test_matches_reference_float32(gate, clip, tiling):
    assert_small(compare_with_reference(gate, "float32", clip=clip), 1e-5)


@pytest.mark.parametrize("gate", GATES)
def test_matches_reference_unidirectional_full_length_batch_first(gate):
    errors = compare_with_reference(gate, "float64", bidirectional=False, lengths=None, batch_first=True, seed=3)
    assert_small(errors, 1e-12)


@pytest.mark.parametrize("gate", GATES)
def test_matches_reference_nondefault_activations(gate):
    assert_small(compare_with_reference(gate, "float64", clip=0.8, seed=1, **NONDEFAULT[gate]), 1e-12)


@pytest.mark.slow  # compiles lstm with the benchmark's activations in float32, which nothing else needs
def test_matches_reference_float32_softsign_hard_sigmoid():
    assert_small(compare_with_reference("lstm", "float32", clip=0.8, seed=2, **BENCH_ACTIVATIONS), 1e-5)


# --------------------------------------------------------------------------- sLSTM


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_slstm_from_the_empty_initial_state(dtype, tol):
    """No initial state: n = 0 is empty, so the first step takes m = z_i and forgets nothing."""
    assert_small(compare_with_reference("slstm", dtype, seed=4, empty_state=True), tol)


def test_slstm_output_does_not_depend_on_the_stabiliser():
    """(c, n, m) and (c e^-d, n e^-d, m + d) are the same state: c/n and every output agree."""
    rnn = ln.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=5, gate="slstm")
    rng = np.random.default_rng(6)
    x = 5.0 * rng.normal(size=(30, B, I))
    h0, c0, n0, m0 = ng.random_state("slstm", rng, (4, 4, B, H))
    shift = rng.uniform(-30.0, 30.0, size=m0.shape)
    y, (h, c, n, m) = rnn(x, (h0, c0, n0, m0))
    y2, (h2, c2, n2, m2) = rnn(x, (h0, c0 * np.exp(-shift), n0 * np.exp(-shift), m0 + shift))
    assert max_rel_err(y2, y) < 1e-9 and max_rel_err(h2, h) < 1e-9
    assert max_rel_err(c2 / n2, c / n) < 1e-9
    assert not np.allclose(m2, m)  # the shifted run did carry a different stabiliser


def test_slstm_float32_follows_float64_under_saturated_inputs():
    """The float32 kernels (rational exp, series log1p) against float64 on pre-activations
    far beyond where exp(z_i), unstabilised, overflows float32 (88)."""
    rnn = ln.LSTM(I, H, dtype="float64", seed=7, gate="slstm")
    rnn32 = ln.LSTM(I, H, dtype="float32", seed=7, gate="slstm")
    x = 100.0 * np.random.default_rng(8).normal(size=(60, B, I))
    params = rnn.state_dict()
    z_i = x @ params["weight_ih_l0"][:H].T + params["bias_ih_l0"][:H] + params["bias_hh_l0"][:H]
    assert z_i.max() > 88.0 + np.abs(params["weight_hh_l0"][:H]).sum(1).max()  # whatever h (|h| <= 1) adds
    y64, (_, _, n64, _) = rnn(x)
    y32, _ = rnn32(x.astype(np.float32))
    assert (n64 >= 1.0).all()
    assert np.isfinite(y32).all() and np.abs(y32).max() <= 1.0  # |c/n| <= max |tanh| and o <= 1
    assert np.abs(y32 - y64).max() < 1e-4


def test_clip_is_active_in_these_cases():
    """The clip cases above mean something: with clip=0.5 many pre-activations are clamped."""
    rnn = ln.LSTM(I, H, num_layers=LAYERS, bidirectional=True, dtype="float64", seed=0, gate="lstm")
    ref = ng.NaiveRNN("lstm", rnn.state_dict(), LAYERS, True)
    x = np.random.default_rng(100).normal(size=(T, B, I))
    z = x @ ref.params["weight_ih_l0"].T + ref.params["bias_ih_l0"] + ref.params["bias_hh_l0"]  # at h = 0
    assert (np.abs(z) > 0.5).mean() > 0.1
    clipped = ln.LSTM(I, H, num_layers=LAYERS, bidirectional=True, dtype="float64", seed=0, gate="lstm", clip=0.5)
    assert max_rel_err(clipped(x)[0], rnn(x)[0]) > 1e-3


# --------------------------------------------------------------------------- finite differences


def _layer_fd(gate, clip, seed=0, step=1e-6):
    """Analytic vs central-difference gradients of a random projection loss through a
    2-layer bidirectional float64 ln.LSTM with lengths, for every parameter, x and state0."""
    t, b, i, h = 3, 2, 2, 2
    lengths = np.array([3, 2])
    rnn = ln.LSTM(i, h, num_layers=2, bidirectional=True, dtype="float64", seed=seed, gate=gate, clip=clip)
    n_state = len(rnn.state_names)
    rng = np.random.default_rng(seed + 7)
    x = rng.normal(size=(t, b, i))
    state0 = ng.random_state(gate, rng, (n_state, 4, b, h))
    wy = rng.normal(size=(t, b, 2 * h))
    ws = rng.normal(size=state0.shape)

    def loss():
        y, final = rnn(x, _pack(state0, n_state), lengths=lengths, need_grad=False)
        return float(np.sum(wy * y) + np.sum(ws * _unpack(final, n_state)))

    rnn(x, _pack(state0, n_state), lengths=lengths)
    grads = rnn.backward(wy, _pack(ws, n_state))
    analytic = {f"param {k}": grads.params[k] for k in rnn.params}
    analytic["x"] = grads.x
    analytic["state0"] = _unpack(grads.state, n_state)
    targets = {f"param {k}": v for k, v in rnn.params.items()}
    targets["x"], targets["state0"] = x, state0

    return worst_gradient_errors(loss, targets, analytic, step)


@pytest.mark.parametrize("clip", [None, 0.5], ids=["noclip", "clip"])
@pytest.mark.parametrize("gate", GATES)
def test_layer_gradients_match_finite_differences(gate, clip):
    assert_small(_layer_fd(gate, clip), 1e-6)


# --------------------------------------------------------------------------- check_plugin


@pytest.mark.parametrize("gate", GATES + [pytest.param(g, marks=pytest.mark.slow) for g in LATER_GATES])
def test_check_plugin_passes_builtin_gate(gate):
    report = ln.check_plugin(gate)
    assert report.ok, str(report)
    assert (report.kind, report.name, report.distribution, report.version) == \
        ("gate", gate, "lstm-numba", ln.__version__)
    names = [c.name for c in report.checks]
    assert names == ["load", "gradient", "gradient with clip", "writes", "elementwise", "additive", "projectable",
                     "scan", "float32 step", "layer float64", "layer float32"]
    assert "clip=0.9 changed" in report.checks[2].detail
    text = str(report)
    assert text.splitlines()[0] == f"gate '{gate}' from lstm-numba {ln.__version__} " \
                                   f"(lstm_numba_plugins.gates.{gate}:gate): OK"
    assert len(text.splitlines()) == 1 + len(report.checks)


def test_check_plugin_kind_argument():
    assert ln.check_plugin("tanh", kind="activation").ok
    report = ln.check_plugin("tanh", kind="gate")
    assert not report.ok and "unknown gate 'tanh'" in report.checks[0].detail
    with pytest.raises(ValueError, match="kind"):
        ln.check_plugin("lstm", kind="cell")
