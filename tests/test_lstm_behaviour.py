"""Initialisation, modes, dropout, state_dict, determinism across thread counts."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lstm_numba as ln


def test_init_is_pytorch_uniform_and_reproducible():
    a = ln.LSTM(5, 64, num_layers=2, bidirectional=True, seed=3)
    b = ln.LSTM(5, 64, num_layers=2, bidirectional=True, seed=3)
    c = ln.LSTM(5, 64, num_layers=2, bidirectional=True, seed=4)
    bound = 1 / np.sqrt(64)
    for key, value in a.state_dict().items():
        assert value.dtype == np.float32
        assert np.abs(value).max() <= bound
        assert value.std() > bound / 2.5  # roughly uniform on the whole interval, not clustered
        np.testing.assert_array_equal(value, b.state_dict()[key])
        assert not np.array_equal(value, c.state_dict()[key])
    assert list(a.state_dict())[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert a.state_dict()["weight_ih_l1_reverse"].shape == (256, 128)


def test_state_dict_roundtrip_and_copy_semantics():
    a = ln.LSTM(3, 4, seed=0)
    b = ln.LSTM(3, 4, seed=1)
    b.load_state_dict(a.state_dict())
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    sd = a.state_dict()
    sd["weight_ih_l0"][:] = 0  # a copy: the layer is unchanged
    assert np.abs(a.params["weight_ih_l0"]).max() > 0


def test_dropout_only_in_training_and_reproducible():
    x = np.random.default_rng(0).standard_normal((6, 4, 3))
    a = ln.LSTM(3, 8, num_layers=2, dropout=0.5, dtype="float64", seed=11)
    b = ln.LSTM(3, 8, num_layers=2, dropout=0.5, dtype="float64", seed=11)
    ya, yb = a(x)[0], b(x)[0]
    np.testing.assert_array_equal(ya, yb)
    a.eval()
    y_eval1, y_eval2 = a(x)[0], a(x)[0]
    np.testing.assert_array_equal(y_eval1, y_eval2)
    assert not np.allclose(ya, y_eval1)
    # without dropout the training and eval outputs agree
    c = ln.LSTM(3, 8, num_layers=2, dtype="float64", seed=11)
    np.testing.assert_array_equal(c(x)[0], c.eval()(x)[0])


def test_dropout_gradient_uses_the_same_mask():
    """Finite differences through a dropout layer: the mask is replayed with the same seed."""
    x = np.random.default_rng(1).standard_normal((4, 2, 3))
    rnn = ln.LSTM(3, 4, num_layers=2, dropout=0.3, dtype="float64", seed=5)
    y, _ = rnn(x)
    w = np.random.default_rng(2).standard_normal(y.shape)
    g = rnn.backward(w)
    eps = 1e-6
    key = "weight_hh_l0"
    for i in (0, 7, 15):
        vals = []
        for sign in (1, -1):
            probe = ln.LSTM(3, 4, num_layers=2, dropout=0.3, dtype="float64", seed=5)
            probe.params[key].reshape(-1)[i] += sign * eps
            vals.append((probe(x)[0] * w).sum())
        np.testing.assert_allclose(g.params[key].reshape(-1)[i], (vals[0] - vals[1]) / (2 * eps), rtol=1e-6)


def test_eval_mode_keeps_no_tape():
    rnn = ln.LSTM(3, 4).eval()
    rnn(np.ones((2, 1, 3), np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        rnn.backward(np.ones((2, 1, 4), np.float32))
    rnn(np.ones((2, 1, 3), np.float32), need_grad=True)
    assert rnn.backward(np.ones((2, 1, 4), np.float32)).x.shape == (2, 1, 3)


def test_non_contiguous_and_other_float_inputs_are_converted():
    rnn = ln.LSTM(3, 4, dtype="float32", seed=0)
    x64 = np.random.default_rng(0).standard_normal((3, 5, 2)).transpose(1, 2, 0)[:, :, :]  # (5, 2, 3) strided
    assert not x64.flags.c_contiguous
    y, (h, c) = rnn(x64)
    y2, _ = rnn(np.ascontiguousarray(x64, dtype=np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, y2)


DETERMINISM_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, lstm_numba as ln, numba
    from lstm_numba.engine import tiling
    if sys.argv[2] == "hidden-split":  # as the conftest fixture: 4 parts of 8 units, GEMM blocks
        sys.path.insert(0, sys.argv[3])
        from tilings import hidden_split_settings
        for target, name, value in hidden_split_settings():
            setattr(target, name, value)
    rng = np.random.default_rng(0)
    rnn = ln.LSTM(16, 32, num_layers=2, bidirectional=True, dtype="float32", seed=0)
    x = rng.standard_normal((12, 9, 16)).astype(np.float32)
    lengths = np.array([12, 3, 7, 12, 1, 9, 12, 5, 2])
    y, (h, c) = rnn(x, lengths=lengths)
    g = rnn.backward(rng.standard_normal(y.shape).astype(np.float32))
    # a stream, with the input projection hoisted: its tasks run in parallel
    tiling.fuses_input_projection = lambda *shape: False
    uni = ln.LSTM(16, 32, num_layers=2, dtype="float32", seed=1)
    ys, state = [], uni.initial_state(9)
    for t0, t1 in ((0, 5), (5, 6), (6, 12)):
        y_chunk, state = uni.step(x[t0:t1], state, lengths=np.clip(lengths - t0, 0, t1 - t0))
        ys.append(y_chunk)
    np.savez(sys.argv[1], y=y, h=h, c=c, dx=g.x, dh0=g.state[0], stream=np.concatenate(ys), stream_c=state.c,
             **g.params)
    print(numba.get_num_threads(), tiling.choose_tiling(True, True, 9, 16, 32, 128, 8).parts)
""")


@pytest.mark.parametrize("tiling,parts", [("rows", 1), ("hidden-split", 4)])
def test_bitwise_identical_across_thread_counts(tmp_path, tiling, parts):
    """Training, and a stream (``step``) whose hoisted input projection runs in parallel tasks.
    Also across a cold kernel cache and a warm one: the first run compiles the kernels
    into an empty cache directory and the others load them from it (with fastmath
    ``reassoc`` the two gave different last bits)."""
    results = {}
    for threads in ("1", "2", "3"):
        out = tmp_path / f"run{threads}.npz"
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, LSTM_NUMBA_ADAPTIVE_THREADS="0",
                   LSTM_NUMBA_CACHE_DIR=str(tmp_path / "kernels"))  # really on that many threads
        proc = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(out), tiling,
                               str(Path(__file__).parent)], env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [threads, str(parts)]
        results[threads] = dict(np.load(out))
    for threads in ("2", "3"):
        for key, value in results["1"].items():
            assert np.array_equal(value, results[threads][key]), (threads, key)
