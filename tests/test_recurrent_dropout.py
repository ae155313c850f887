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
from conftest import max_rel_err, worst_gradient_errors
from test_family_gates import assert_bitwise_across_thread_counts

import lstm_numba as ln
from lstm_numba.nn import recurrent_heads

T, B, I, H = 5, 3, 2, 4
LENGTHS = np.array([5, 2, 4])


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, B, I)), rng.normal(size=(T, B, 2 * H))


def _compare_with_reference(gate, dtype, p=0.4, layers=2, **layer_kwargs):
    x, dy = _problem()
    rnn = ln.LSTM(I, H, num_layers=layers, bidirectional=True, dtype=dtype, seed=3, gate=gate,
                  recurrent_dropout=p, **layer_kwargs)
    y, final = rnn(x.astype(dtype), lengths=LENGTHS)
    grads = rnn.backward(dy.astype(dtype))
    masks = {kind: {k: v.copy() for k, v in rnn.last_masks[kind].items()} for kind in rnn.last_masks}
    assert len(masks["recurrent_dropout"]) == 2 * layers
    heads = rnn.num_heads
    dense = {k: recurrent_heads.dense(v, rnn.gate.n_blocks) if k.startswith("weight_hh") and heads > 1 else v
             for k, v in rnn.state_dict().items()}
    ref = ng.NaiveRNN(gate, dense, layers, True, masks=masks)
    y_ref, final_ref = ref.forward(x, None, LENGTHS)
    g_ref, dx_ref, _ = ref.backward(dy)
    tol = 1e-9 if dtype == "float64" else 2e-4
    assert max_rel_err(y, y_ref) < tol
    for k, value in enumerate(final if isinstance(final, tuple) else (final,)):
        assert max_rel_err(value, final_ref[k]) < tol
    assert max_rel_err(grads.x, dx_ref) < tol
    for name, value in grads.params.items():  # with heads, the dense reference's diagonal blocks
        expected = recurrent_heads.blocks_of(g_ref[name], heads) if value.ndim == 3 else g_ref[name]
        assert max_rel_err(value, expected) < tol, name
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
    x, dy = _problem(1)
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


@pytest.mark.slow
def test_cli_train_with_recurrent_dropout_writes_a_checkpoint_that_loads(tmp_path):
    from click.testing import CliRunner
    from lstm_numba_cli.main import cli
    from train_helpers import write_series

    from lstm_numba.training.checkpoint import load_checkpoint

    data = write_series(tmp_path / "s.csv", n=60)
    out = tmp_path / "f.npz"
    args = ["train", str(data), "--window", "6", "--horizon", "2", "--hidden-size", "4", "--batch-size", "16",
            "--epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, args + ["--recurrent-dropout", "0.2"])
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(out).meta
    assert meta["model"]["recurrent_dropout"] == meta["model"]["rnn"]["recurrent_dropout"] == 0.2
    assert CliRunner().invoke(cli, ["predict", str(out)]).exit_code == 0
    bad = CliRunner().invoke(cli, args + ["--gate", "indrnn", "--recurrent-dropout", "0.1", "--force"])
    assert bad.exit_code != 0 and "recurrent_dropout: gate 'indrnn'" in bad.output, bad.output
