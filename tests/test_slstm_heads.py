"""sLSTM with heads (``num_heads``): block-diagonal recurrent weights, xLSTM's layout.

References: a NumPy forward written from xLSTM's equations (its vanilla backend: the
per-head recurrent product of h_{t-1} with R (NH, DH, 4, DH), then the stabilised
exponential gating) with the weights given in xLSTM's layout; ``naive_gates``' sLSTM with
the dense block-diagonal W_hh (forward and backward, lengths, both directions, two layers);
float64 finite differences over every parameter. Compile budget: slstm with tanh/sigmoid
in float32 and float64, which test_plugins_gates compiles already.
"""

from __future__ import annotations

import naive_gates as ng
import numpy as np
import pytest
from conftest import max_rel_err, worst_gradient_errors

import lstm_numba as ln
from lstm_numba.nn import recurrent_heads as rh

#: Each test here compiles kernels no other default test does (about 4 minutes of the
#: default suite on a 2-core machine together): they run in CI's slow pass.
pytestmark = pytest.mark.slow

T, B, I, H, NH = 5, 3, 3, 4, 2
DH = H // NH
LENGTHS = np.array([5, 2, 4])


def _log_sigmoid(x):
    return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def xlstm_forward(x, w_ih, b_ih, r, b_hh):
    """One sLSTM direction from the zero state, as xLSTM's vanilla backend computes it.

    x (T, B, I); w_ih (4H, I); r (NH, DH, 4, DH): R[h, k, g, a] from unit k of head h to unit
    a of gate g of head h; biases (4H,). Returns y (T, B, H)."""
    heads, width, _, _ = r.shape
    hidden = heads * width
    h = c = n = m = np.zeros((x.shape[1], hidden))
    ys = []
    for x_t in x:
        # (B, NH, DH) x (NH, DH, 4, DH) -> (B, 4, NH, DH): each head reads only its own units
        ry = np.einsum("bhk,hkga->bgha", h.reshape(-1, heads, width), r).reshape(-1, 4 * hidden)
        raw = x_t @ w_ih.T + b_ih + ry + b_hh
        i_raw, f_raw, z_raw, o_raw = np.split(raw, 4, axis=1)
        log_f_plus_m = m + _log_sigmoid(f_raw)
        m_new = i_raw if not n.any() else np.maximum(i_raw, log_f_plus_m)
        i_gate, f_gate = np.exp(i_raw - m_new), np.exp(log_f_plus_m - m_new)
        c = f_gate * c + i_gate * np.tanh(z_raw)
        n = f_gate * n + i_gate
        m = m_new
        h = 1.0 / (1.0 + np.exp(-o_raw)) * c / n
        ys.append(h)
    return np.stack(ys)


def test_weights_in_xlstm_layout_reproduce_xlstm_equations():
    rng = np.random.default_rng(0)
    rnn = ln.LSTM(I, H, gate="slstm", num_heads=NH, dtype="float64", seed=1)
    r = rng.normal(scale=0.7, size=(NH, DH, 4, DH))
    state = rnn.state_dict()
    assert state["weight_hh_l0"].shape == (NH, 4 * DH, DH)
    state["weight_hh_l0"] = rh.from_xlstm(r)
    rnn.load_state_dict(state)
    x = rng.normal(size=(T, B, I))
    y, _ = rnn(x)
    y_ref = xlstm_forward(x, state["weight_ih_l0"], state["bias_ih_l0"], r, state["bias_hh_l0"])
    assert max_rel_err(y, y_ref) < 1e-12
    np.testing.assert_array_equal(rh.to_xlstm(rnn.state_dict()["weight_hh_l0"]), r)


def _dense_state(rnn):
    return {k: rh.dense(v, 4) if k.startswith("weight_hh") else v for k, v in rnn.state_dict().items()}


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_matches_dense_block_diagonal_reference_with_lengths_layers_directions(dtype, tol):
    rng = np.random.default_rng(2)
    rnn = ln.LSTM(I, H, num_layers=2, bidirectional=True, gate="slstm", num_heads=NH, dtype=dtype, seed=3)
    x = rng.normal(size=(T, B, I)).astype(dtype)
    state0 = ng.random_state("slstm", rng, (4, 4, B, H)).astype(dtype)
    dy = rng.normal(size=(T, B, 2 * H)).astype(dtype)
    dstate = rng.normal(size=state0.shape).astype(dtype)
    y, final = rnn(x, tuple(state0), lengths=LENGTHS)
    grads = rnn.backward(dy, tuple(dstate))
    ref = ng.NaiveRNN("slstm", _dense_state(rnn), 2, True, ng.config())
    y_ref, final_ref = ref.forward(x, state0, LENGTHS)
    g_ref, dx_ref, dstate_ref = ref.backward(dy, dstate)
    assert y.dtype == np.dtype(dtype)
    errors = {"y": max_rel_err(y, y_ref), "final": max_rel_err(np.stack(final), final_ref),
              "dx": max_rel_err(grads.x, dx_ref), "dstate0": max_rel_err(np.stack(grads.state), dstate_ref)}
    for key, value in g_ref.items():
        ours = grads.params[key]
        if key.startswith("weight_hh"):  # the reference's dense gradient, restricted to the heads' blocks
            assert ours.shape == (NH, 4 * DH, DH)
            value = rh.blocks_of(value, NH)
        errors[f"d{key}"] = max_rel_err(ours, value)
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, bad


def test_finite_differences_every_parameter():
    rng = np.random.default_rng(4)
    rnn = ln.LSTM(I, H, gate="slstm", num_heads=NH, bidirectional=True, dtype="float64", seed=5)
    x = rng.normal(size=(4, 2, I))
    lengths = np.array([4, 3])
    weights = rng.normal(size=(4, 2, 2 * H))

    def loss():
        y, _ = rnn(x, lengths=lengths)
        return float((weights * y).sum())

    loss()
    analytic = rnn.backward(weights).params
    worst = worst_gradient_errors(loss, rnn.params, analytic, 1e-6)
    assert max(worst.values()) < 1e-6, worst


def test_block_diagonal_off_block_weights_cannot_be_given():
    rnn = ln.LSTM(I, H, gate="slstm", num_heads=NH, dtype="float64", seed=0)
    dense = _dense_state(rnn)
    assert dense["weight_hh_l0"].shape == (4 * H, H)
    off_block = np.ones((4, H, H), dtype=bool)
    for h in range(NH):
        off_block[:, h * DH:(h + 1) * DH, h * DH:(h + 1) * DH] = False
    assert not dense["weight_hh_l0"].reshape(4, H, H)[off_block].any()
    np.testing.assert_array_equal(rh.blocks_of(dense["weight_hh_l0"], NH), rnn.params["weight_hh_l0"])
    with pytest.raises(ValueError, match="weight_hh_l0"):  # a full (4H, H) matrix is refused by shape
        rnn.load_state_dict(dense)


def test_one_head_is_todays_slstm_bitwise():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(T, B, I)).astype("float32")
    plain = ln.LSTM(I, H, gate="slstm", seed=7)
    one = ln.LSTM(I, H, gate="slstm", num_heads=1, seed=7)
    assert {k: v.shape for k, v in one.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    (y1, _), (y2, _) = plain(x, lengths=LENGTHS), one(x, lengths=LENGTHS)
    np.testing.assert_array_equal(y1, y2)
    for key, value in plain.backward(y1).params.items():
        np.testing.assert_array_equal(one.backward(y2).params[key], value)


def test_streaming_step_matches_forward():
    rng = np.random.default_rng(8)
    rnn = ln.LSTM(I, H, gate="slstm", num_heads=NH, num_layers=2, dtype="float64", seed=9)
    x = rng.normal(size=(T, B, I))
    y, _ = rnn(x, need_grad=False)
    state = rnn.initial_state(B)
    y_first, state = rnn.step(x[:2], state)
    y_rest, state = rnn.step(x[2:], state)
    np.testing.assert_array_equal(np.concatenate([y_first, y_rest]), y)


@pytest.mark.parametrize("heads, pattern", [(3, "num_heads=3 does not divide hidden_size=4"),
                                            (0, "num_heads: expected a positive integer"),
                                            (2.0, "num_heads: expected a positive integer")])
def test_bad_num_heads_is_a_clear_error(heads, pattern):
    with pytest.raises(ValueError, match=pattern):
        ln.LSTM(I, H, gate="slstm", num_heads=heads)


def test_conversion_refuses_wrong_shapes():
    with pytest.raises(ValueError, match="recurrent_kernel"):
        rh.from_xlstm(np.zeros((2, 2, 4, 3)))
    with pytest.raises(ValueError, match="weight_hh"):
        rh.to_xlstm(np.zeros((2, 6, 2)))


def test_cli_train_with_heads_writes_a_checkpoint_that_loads(tmp_path):
    from click.testing import CliRunner
    from lstm_numba_cli.main import cli
    from train_helpers import write_series

    from lstm_numba.training.checkpoint import load_checkpoint

    data = write_series(tmp_path / "s.csv", n=60)
    out = tmp_path / "f.npz"
    args = ["train", str(data), "--window", "6", "--horizon", "2", "--hidden-size", "4", "--batch-size", "16",
            "--epochs", "1", "--gate", "slstm", "--out", str(out)]
    result = CliRunner().invoke(cli, args + ["--num-heads", "2"])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(out)
    assert ckpt.meta["model"]["num_heads"] == 2 and ckpt.meta["model"]["rnn"]["num_heads"] == 2
    assert ckpt.params["rnn.weight_hh_l0"].shape == (2, 8, 2)
    assert CliRunner().invoke(cli, ["predict", str(out)]).exit_code == 0
    bad = CliRunner().invoke(cli, args + ["--num-heads", "3"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert "num_heads=3" in bad.output and "hidden_size=4" in bad.output, bad.output
