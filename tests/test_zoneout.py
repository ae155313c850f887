"""Zoneout (``zoneout``, ``zoneout_cell``) inside the compiled kernels.

References: the plain-NumPy driver of tests/naive_gates.py (zoneout written from the
equations, masks given in time order as ``LSTM.last_masks`` reports them), float64 central
differences with the masks fixed, the plain layer (p = 0 is bitwise it) and the evaluation
expectation p * previous + (1 - p) * new.

Compile budget: the default run uses the LSTM in float64 only (a combination other default
tests compile); other gates and float32 are ``slow``.
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


def _state_tuple(final, gate):
    return final if isinstance(final, tuple) else (final,)


def _dense(state, n_blocks):
    """A state_dict with block-diagonal (num_heads) recurrent weights made dense, for the reference."""
    return {k: recurrent_heads.dense(v, n_blocks) if k.startswith("weight_hh") and v.ndim == 3 else v
            for k, v in state.items()}


def _compare_with_reference(gate, dtype, training, zoneout=0.3, zoneout_cell=0.2, layers=2, num_heads=1):
    x, dy = _problem()
    cell = zoneout_cell if gate in ("lstm", "peephole", "coupled", "slstm") else 0.0
    rnn = ln.LSTM(I, H, num_layers=layers, bidirectional=True, dtype=dtype, seed=3, gate=gate,
                  zoneout=zoneout, zoneout_cell=cell, num_heads=num_heads)
    rnn.train(training)
    y, final = rnn(x.astype(dtype), lengths=LENGTHS, need_grad=True)
    grads = rnn.backward(dy.astype(dtype))
    masks = {"zoneout": {k: v.copy() for k, v in rnn.last_masks["zoneout"].items()}}
    assert len(masks["zoneout"]) == 2 * layers
    ref = ng.NaiveRNN(gate, _dense(rnn.state_dict(), rnn.gate.n_blocks), layers, True, masks=masks)
    y_ref, final_ref = ref.forward(x, None, LENGTHS)
    g_ref, dx_ref, _ = ref.backward(dy)
    tol = 1e-9 if dtype == "float64" else 2e-4
    assert max_rel_err(y, y_ref) < tol
    for k, value in enumerate(_state_tuple(final, gate)):
        assert max_rel_err(value, final_ref[k]) < tol
    assert max_rel_err(grads.x, dx_ref) < tol
    for name, value in grads.params.items():  # with heads, the dense reference's diagonal blocks
        expected = recurrent_heads.blocks_of(g_ref[name], num_heads) if value.ndim == 3 else g_ref[name]
        assert max_rel_err(value, expected) < tol, name
    return rnn


def test_training_masks_match_the_numpy_reference_lstm():
    """Forward and every gradient with training's 0/1 masks, 2 layers, bidirectional, lengths."""
    rnn = _compare_with_reference("lstm", "float64", training=True)
    zone = rnn.last_masks["zoneout"][(0, 0)]
    assert zone.shape == (T, B, 2, H) and set(np.unique(zone)) == {0.0, 1.0}


def test_evaluation_is_the_expectation_and_p0_is_the_plain_layer():
    x, _ = _problem(1)
    plain = ln.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=3)
    off = ln.LSTM(I, H, num_layers=2, bidirectional=True, dtype="float64", seed=3, zoneout=0.0, zoneout_cell=0.0)
    y_plain, _ = plain(x, lengths=LENGTHS)
    y_off, _ = off(x, lengths=LENGTHS)
    assert np.array_equal(y_plain, y_off)
    # evaluation: h = p * h_prev + (1 - p) * h_new, one layer, stepped by hand from the plain cell
    p_h, p_c = 0.3, 0.2
    zoned = ln.LSTM(I, H, dtype="float64", seed=3, zoneout=p_h, zoneout_cell=p_c).eval()
    y, (h_n, c_n) = zoned(x)
    w = {k: np.asarray(v) for k, v in zoned.state_dict().items()}
    h, c = np.zeros((B, H)), np.zeros((B, H))
    sig = ng._sigmoid
    for t in range(T):
        z = x[t] @ w["weight_ih_l0"].T + w["bias_ih_l0"] + h @ w["weight_hh_l0"].T + w["bias_hh_l0"]
        i, f, g, o = np.split(z, 4, axis=1)
        c_new = sig(f) * c + sig(i) * np.tanh(g)
        h_new = sig(o) * np.tanh(c_new)
        c = p_c * c + (1 - p_c) * c_new
        h = p_h * h + (1 - p_h) * h_new
        assert max_rel_err(y[t], h) < 1e-12
    assert max_rel_err(c_n[0], c) < 1e-12 and max_rel_err(h_n[0], h) < 1e-12


def test_gradients_by_finite_differences_with_fixed_masks():
    t, b, i, h = 3, 2, 2, 3
    rng = np.random.default_rng(7)
    rnn = ln.LSTM(i, h, num_layers=2, bidirectional=True, dtype="float64", seed=5, zoneout=0.4, zoneout_cell=0.4)
    x = rng.normal(size=(t, b, i))
    lengths = np.array([3, 2])
    proj = rng.normal(size=(t, b, 2 * h))
    y, _ = rnn(x, lengths=lengths)
    grads = rnn.backward(proj)
    fixed = {k: v.copy() for k, v in rnn.last_masks["zoneout"].items()}
    params = rnn.params

    def loss():
        # the same masks for every evaluation: the reference driver with them, float64
        ref = ng.NaiveRNN("lstm", params, 2, True, masks={"zoneout": fixed})
        return float(np.sum(ref.forward(x, None, lengths)[0] * proj))

    targets = {"x": x, "weight_hh_l0": params["weight_hh_l0"], "weight_ih_l1_reverse": params["weight_ih_l1_reverse"]}
    analytic = {"x": grads.x, "weight_hh_l0": grads.params["weight_hh_l0"],
                "weight_ih_l1_reverse": grads.params["weight_ih_l1_reverse"]}
    worst = worst_gradient_errors(loss, targets, analytic, 1e-6)
    assert max(worst.values()) < 1e-6, worst


def test_masks_keep_about_p_of_the_units_and_follow_the_seed():
    x = np.zeros((T, 40, I))
    first = ln.LSTM(I, H, dtype="float64", seed=11, zoneout=0.25, zoneout_cell=0.6)
    first(x)
    zone = first.last_masks["zoneout"][(0, 0)]
    kept = 1.0 - zone.mean(axis=(0, 1, 3))  # the share of units that keep their previous value
    assert abs(kept[0] - 0.25) < 0.05 and abs(kept[1] - 0.6) < 0.05
    again = ln.LSTM(I, H, dtype="float64", seed=11, zoneout=0.25, zoneout_cell=0.6)
    again(x)
    assert np.array_equal(again.last_masks["zoneout"][(0, 0)], zone)


def test_bad_zoneout_arguments_are_named():
    with pytest.raises(ValueError, match="zoneout: expected a probability"):
        ln.LSTM(I, H, zoneout=1.0)
    with pytest.raises(ValueError, match="zoneout_cell: gate 'gru' has no cell state"):
        ln.LSTM(I, H, gate="gru", zoneout_cell=0.1)
    with pytest.raises(ValueError, match="proj_size"):
        ln.LSTM(I, H, proj_size=2, zoneout=0.1)
    for gate in ("mingru", "minlstm"):  # trained as a parallel scan: refused, not silently ignored
        with pytest.raises(ValueError, match=f"zoneout: not available with gate '{gate}'"):
            ln.LSTM(I, H, gate=gate, zoneout=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("training", [True, False])
def test_slstm_heads_match_the_dense_numpy_reference(training):
    """num_heads: zoneout acts on the states, so block-diagonal W_hh changes nothing about it."""
    _compare_with_reference("slstm", "float64", training, num_heads=2)


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["gru", "peephole", "coupled", "slstm", "indrnn"])
@pytest.mark.parametrize("training", [True, False])
def test_other_gates_match_the_numpy_reference(gate, training):
    _compare_with_reference(gate, "float64", training)


@pytest.mark.slow
def test_bitwise_identical_across_thread_counts(tmp_path, tiling):
    """Training masks, 1, 2 and 3 threads, both tilings (float32, 2 layers, bidirectional, lengths)."""
    assert_bitwise_across_thread_counts(tmp_path, "lstm", tiling, zoneout=0.2, zoneout_cell=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("training", [True, False])
def test_float32_lstm_matches_the_numpy_reference(training):
    _compare_with_reference("lstm", "float32", training)


@pytest.mark.slow
def test_cli_train_with_zoneout_writes_a_checkpoint_that_loads_and_predicts(tmp_path):
    from click.testing import CliRunner
    from lstm_numba_cli.main import cli
    from train_helpers import write_series

    from lstm_numba.training.checkpoint import load_checkpoint

    data = write_series(tmp_path / "s.csv", n=60)
    out = tmp_path / "f.npz"
    args = ["train", str(data), "--window", "6", "--horizon", "2", "--hidden-size", "4", "--batch-size", "16",
            "--epochs", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, args + ["--zoneout", "0.2", "--zoneout-cell", "0.1"])
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(out).meta
    assert (meta["model"]["zoneout"], meta["model"]["zoneout_cell"]) == (0.2, 0.1)
    assert (meta["model"]["rnn"]["zoneout"], meta["train"]["zoneout_cell"]) == (0.2, 0.1)
    assert CliRunner().invoke(cli, ["predict", str(out)]).exit_code == 0
    bad = CliRunner().invoke(cli, args + ["--zoneout", "1.5"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "--zoneout" in bad.output, bad.output
    bad = CliRunner().invoke(cli, args + ["--gate", "gru", "--zoneout-cell", "0.1", "--force"])
    assert bad.exit_code != 0 and "zoneout_cell: gate 'gru' has no cell state" in bad.output, bad.output


def test_models_keep_zoneout_in_their_config_only_when_on():
    from lstm_numba.nn.models import CharLM, SequenceRegressor, build_model

    model = SequenceRegressor(I, 1, H, zoneout=0.2, zoneout_cell=0.1, seed=0)
    cfg = model.config()
    assert (cfg["zoneout"], cfg["zoneout_cell"]) == (0.2, 0.1)
    rebuilt = build_model(cfg)
    assert (rebuilt.rnn.zoneout, rebuilt.rnn.zoneout_cell) == (0.2, 0.1)
    assert "zoneout" not in CharLM(10, 8, seed=0).config()  # off: absent, as in files written before it


def test_onnx_export_refuses_zoneout_and_takes_recurrent_dropout():
    from lstm_numba.interop.common import InteropError
    from lstm_numba.interop.onnx_export import check_exportable

    with pytest.raises(InteropError, match="cannot export zoneout to ONNX"):
        check_exportable(ln.LSTM(I, H, zoneout_cell=0.1))
    check_exportable(ln.LSTM(I, H, recurrent_dropout=0.1))  # the identity in evaluation: nothing to refuse
