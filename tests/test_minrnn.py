"""minGRU and minLSTM's parallel scan (``Gate.scan``; engine/scan.py, engine/kernels/scan.py).

The gates themselves are checked with the other family gates (test_family_gates.py: the
NumPy references of naive_gates, float64 finite differences through the scan path,
check_plugin, streaming, thread counts). Here: the chunked scan kernels against plain
recurrences with several chunks (default: they are gate-independent and cheap), and the
scan path against the step loop and the stream over sequences of several chunks (slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import lstm_numba as ln
from lstm_numba.engine import tiling
from lstm_numba.engine.kernels import scan

#: Each test here compiles kernels no other default test does (about 4 minutes of the
#: default suite on a 2-core machine together): they run in CI's slow pass.
pytestmark = pytest.mark.slow

T, B, H = 7, 2, 3


def _coefficients(rng):
    """log a, log b (T, B, H) as a scan gate makes them, with row 1 padded after step 4
    (log a = 0, log b = -inf), and a signed h0."""
    log_a = -np.log1p(np.exp(rng.normal(size=(T, B, H))))
    log_b = -np.log1p(np.exp(rng.normal(size=(T, B, H)))) + rng.normal(size=(T, B, H))
    log_a[5:, 1], log_b[5:, 1] = 0.0, -np.inf
    return log_a, log_b, rng.normal(size=(B, H))


def _run_forward(log_a, log_b, h0, chunk):
    n_chunks = -(-T // chunk)
    h = np.empty_like(log_a)
    scan.log_scan_forward(log_a, log_b, h0, chunk, np.empty_like(h), np.empty_like(h),
                          np.empty((n_chunks, B, H)), np.empty((n_chunks, B, H)), h)
    return h


@pytest.mark.parametrize("chunk", [2, 3, 16])
def test_chunked_log_scan_matches_the_recurrence(chunk):
    log_a, log_b, h0 = _coefficients(np.random.default_rng(0))
    expected, h = np.empty_like(log_a), h0
    for t in range(T):
        h = np.exp(log_a[t]) * h + np.exp(log_b[t])
        expected[t] = h
    got = _run_forward(log_a, log_b, h0, chunk)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(got[5:, 1], np.broadcast_to(got[4, 1], (2, H)))  # padded steps keep h


@pytest.mark.parametrize("chunk", [2, 3, 16])
def test_chunked_reverse_scan_gives_the_recurrences_gradients(chunk):
    rng = np.random.default_rng(1)
    log_a, log_b, h0 = _coefficients(rng)
    h = _run_forward(log_a, log_b, h0, 16)
    dh = rng.normal(size=(T, B, H))
    # plain reverse recurrence: g_t = dh_t + a_{t+1} g_{t+1}
    g, carried = np.empty_like(dh), np.zeros((B, H))
    for t in range(T - 1, -1, -1):
        carried = dh[t] + (np.exp(log_a[t + 1]) * carried if t + 1 < T else 0.0)
        g[t] = carried
    h_prev = np.concatenate([h0[None], h[:-1]])
    n_chunks = -(-T // chunk)
    d_log_a, d_log_b, dh0 = np.empty_like(dh), np.empty_like(dh), np.empty((B, H))
    scan.linear_scan_backward(log_a, log_b, h, h0, dh, chunk, np.empty_like(dh), np.empty_like(dh),
                              np.empty((n_chunks, B, H)), d_log_a, d_log_b, dh0)
    np.testing.assert_allclose(d_log_a, g * np.exp(log_a) * h_prev, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d_log_b, g * np.exp(log_b), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dh0, g[0] * np.exp(log_a[0]), rtol=1e-12, atol=1e-14)


def test_chunk_length_depends_on_the_sequence_only():
    assert [tiling.scan_chunk_steps(t) for t in (1, 16, 256, 257, 4000)] == [16, 16, 16, 17, 64]


LONG = 40  # three scan chunks of 16 steps


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("gate", ["mingru", "minlstm"])
def test_scan_equals_step_loop_and_stream(gate, dtype, tol):
    """Training's scan, inference's step loop and ``step`` give the same y and final state
    over a sequence of several chunks, with lengths, a signed initial state, 2 layers."""
    rng = np.random.default_rng(5)
    rnn = ln.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=dtype, seed=2, gate=gate)
    x = rng.normal(size=(LONG, 3, 3)).astype(dtype)
    h0 = rng.normal(size=(4, 3, 4)).astype(dtype)
    lengths = np.array([LONG, 23, 1])
    y_scan, h_scan = rnn(x, h0, lengths, need_grad=True)
    y_loop, h_loop = rnn(x, h0, lengths, need_grad=False)
    scale = np.abs(y_loop).max()
    assert np.abs(y_scan - y_loop).max() <= tol * scale and np.abs(h_scan - h_loop).max() <= tol * scale
    assert not y_scan[23:, 1].any() and not y_scan[1:, 2].any()  # padded steps output zeros

    uni = ln.LSTM(3, 4, num_layers=2, dtype=dtype, seed=2, gate=gate)
    y_full, h_full = uni(x, h0[::2], need_grad=True)
    stream, outputs = uni.initial_state(3, h0[::2]), []
    for t in range(LONG):
        y_t, stream = uni.step(x[t], stream)
        outputs.append(y_t)
    assert np.abs(np.stack(outputs) - y_full).max() <= tol * scale
    assert np.abs(stream.state - h_full).max() <= tol * scale


DETERMINISM_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, lstm_numba as ln
    rng = np.random.default_rng(0)
    rnn = ln.LSTM(4, 5, num_layers=2, bidirectional=True, dtype="float32", seed=0, gate=sys.argv[2])
    x = rng.standard_normal((40, 3, 4)).astype(np.float32)
    y, final = rnn(x, lengths=[40, 17, 33])
    g = rnn.backward(rng.standard_normal(y.shape).astype(np.float32))
    np.savez(sys.argv[1], y=y, dx=g.x, final=final, **g.params)
""")


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["mingru", "minlstm"])
def test_scan_bitwise_identical_across_thread_counts(tmp_path, gate):
    results = []
    for threads in ("1", "2"):
        out = tmp_path / f"run{threads}.npz"
        proc = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(out), gate],
                              env=dict(os.environ, NUMBA_NUM_THREADS=threads), capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
        results.append(dict(np.load(out)))
    for key, value in results[0].items():
        assert np.array_equal(value, results[1][key]), key
