"""Recurrent dropout (``recurrent_dropout``, Keras's semantics) inside the compiled kernels.

References: the plain-NumPy driver of tests/naive_gates.py, whose recurrent product is
Keras's LSTMCell/GRUCell one: gate block k reads (h_{t-1} * m_k) @ W_hh_k^T with the masks
``LSTM.last_masks["recurrent_dropout"]`` reports; float64 central differences with the
masks fixed; the plain layer (p = 0, and evaluation, are bitwise it).

Compile budget: the default run checks arguments only; everything that runs a kernel is
``slow`` (the masked GEMMs compile with every gate's kernels).
"""

from __future__ import annotations

import naive_gates as ng
import numpy as np
import pytest
from conftest import worst_gradient_errors
from test_family_gates import assert_bitwise_across_thread_counts
from test_zoneout import LENGTHS, B, H, I, T, problem, run_against_reference

import lstm_numba as ln

def _compare_with_reference(gate, dtype, p=0.4, layers=2, **layer_kwargs):
    rnn = ln.LSTM(I, H, num_layers=layers, bidirectional=True, dtype=dtype, seed=3, gate=gate,
                  recurrent_dropout=p, **layer_kwargs)
    assert len(run_against_reference(rnn, dtype)["recurrent_dropout"]) == 2 * layers
    return rnn


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["lstm", "gru", "peephole", "coupled", "slstm"])
def test_training_matches_the_numpy_reference(gate):
    """Forward, final states and every gradient: 2 layers, bidirectional, lengths, float64."""
    rnn = _compare_with_reference(gate, "float64")
    mask = rnn.last_masks["recurrent_dropout"][(0, 0)]
    assert mask.shape == (B, rnn.gate.n_blocks, H)
    assert set(np.unique(mask)) == {0.0, 1.0 / 0.6}  # Bernoulli(1 - p) / (1 - p)


@pytest.mark.slow
def test_slstm_heads_match_the_dense_numpy_reference():
    _compare_with_reference("slstm", "float64", num_heads=2)


@pytest.mark.slow
def test_float32_and_zoneout_together_match_the_numpy_reference():
    _compare_with_reference("lstm", "float32", zoneout=0.3, zoneout_cell=0.2)


@pytest.mark.slow
def test_hidden_split_tiling_matches_the_numpy_reference(tiling):
    """Both tilings: the masked GEMMs per gate block and per hidden part."""
    _compare_with_reference("lstm", "float64")


@pytest.mark.slow
def test_gradients_by_finite_differences_with_fixed_masks():
    t, b, i, h = 3, 2, 2, 3
    rng = np.random.default_rng(7)
    rnn = ln.LSTM(i, h, num_layers=2, bidirectional=True, dtype="float64", seed=5, gate="gru", recurrent_dropout=0.5)
    x = rng.normal(size=(t, b, i))
    lengths = np.array([3, 2])
    proj = rng.normal(size=(t, b, 2 * h))
    rnn(x, lengths=lengths)
    grads = rnn.backward(proj)
    fixed = {"recurrent_dropout": {k: v.copy() for k, v in rnn.last_masks["recurrent_dropout"].items()}}
    params = rnn.params

    def loss():
        ref = ng.NaiveRNN("gru", params, 2, True, masks=fixed)
        return float(np.sum(ref.forward(x, None, lengths)[0] * proj))

    targets = {"x": x, "weight_hh_l0": params["weight_hh_l0"], "weight_hh_l1_reverse": params["weight_hh_l1_reverse"],
               "bias_hh_l0": params["bias_hh_l0"]}
    analytic = {name: grads.x if name == "x" else grads.params[name] for name in targets}
    worst = worst_gradient_errors(loss, targets, analytic, 1e-6)
    assert max(worst.values()) < 1e-6, worst


@pytest.mark.slow
def test_p0_and_evaluation_are_the_plain_layer_bitwise():
    x, dy = problem(1)
    plain = ln.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=3)
    off = ln.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=3, recurrent_dropout=0.0)
    on = ln.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=3, recurrent_dropout=0.3)
    y_plain, _ = plain(x, lengths=LENGTHS)
    g_plain = plain.backward(dy)
    y_off, _ = off(x, lengths=LENGTHS)
    g_off = off.backward(dy)
    assert np.array_equal(y_plain, y_off) and np.array_equal(g_plain.x, g_off.x)
    assert all(np.array_equal(g_plain.params[k], g_off.params[k]) for k in g_plain.params)
    assert off.last_masks["recurrent_dropout"] == {}
    on.eval()
    y_eval, _ = on(x, lengths=LENGTHS)
    assert np.array_equal(y_eval, plain.eval()(x, lengths=LENGTHS)[0])  # evaluation: the identity


@pytest.mark.slow
def test_masks_follow_the_seed_and_keep_about_1_minus_p():
    x = np.zeros((T, 200, I))
    first = ln.LSTM(I, H, dtype="float64", seed=11, recurrent_dropout=0.25)
    first(x)
    mask = first.last_masks["recurrent_dropout"][(0, 0)]
    assert abs((mask > 0).mean() - 0.75) < 0.03
    again = ln.LSTM(I, H, dtype="float64", seed=11, recurrent_dropout=0.25)
    again(x)
    assert np.array_equal(again.last_masks["recurrent_dropout"][(0, 0)], mask)


@pytest.mark.slow
def test_bitwise_identical_across_thread_counts(tmp_path, tiling):
    assert_bitwise_across_thread_counts(tmp_path, "lstm", tiling, recurrent_dropout=0.3)


@pytest.mark.parametrize("value, error, pattern", [
    (1.0, ValueError, "recurrent_dropout: expected a probability in \\[0, 1\\), got 1.0"),
    (-0.1, ValueError, "recurrent_dropout: expected a probability"),
    ("a", TypeError, "recurrent_dropout: expected a probability"),
])
def test_bad_probabilities_are_named(value, error, pattern):
    with pytest.raises(error, match=pattern):
        ln.LSTM(I, H, recurrent_dropout=value)


@pytest.mark.parametrize("gate", ["indrnn", "mingru", "minlstm"])
def test_gates_without_recurrent_weights_refuse_it(gate):
    with pytest.raises(ValueError, match=f"recurrent_dropout: gate '{gate}' has no recurrent weights"):
        ln.LSTM(I, H, gate=gate, recurrent_dropout=0.1)


def test_projection_refuses_it_and_models_keep_it_in_their_config():
    from lstm_numba.nn.models import SequenceRegressor, build_model

    with pytest.raises(ValueError, match="recurrent_dropout: not available with proj_size"):
        ln.LSTM(I, H, proj_size=2, recurrent_dropout=0.1)
    cfg = SequenceRegressor(I, 1, H, recurrent_dropout=0.2, seed=0).config()
    assert cfg["recurrent_dropout"] == 0.2 and build_model(cfg).rnn.recurrent_dropout == 0.2
    assert "recurrent_dropout" not in SequenceRegressor(I, 1, H, seed=0).config()

