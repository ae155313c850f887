"""LSTM with projections (``proj_size``): ``torch.nn.LSTM(proj_size=...)``'s weights load
unchanged and give its outputs, final states and every gradient; the other projectable
gates by finite differences; streaming and every step's states through the projected loops.

Compile budget: the default run compares with torch in float32 and float64 (layers,
directions, lengths, batch-first); the hidden-split tiling's GEMM blocks, the hoisted input
projection and the other gates are ``slow``.
"""

from __future__ import annotations

import naive_gates as ng
import numpy as np
import pytest
from conftest import max_rel_err, worst_gradient_errors
from test_lstm_torch import TOLERANCE, run_torch

import lstm_numba as ln
from lstm_numba.engine import tiling as engine_tiling

torch = pytest.importorskip("torch")

STEPS, BATCH, INPUTS, HIDDEN, PROJ = 6, 4, 3, 6, 4

CASES = [
    # layers, bidirectional, batch_first, lengths, initial state
    (1, False, False, None, True),
    (2, True, True, [3, 6, 6, 4], True),
    (3, True, False, [1, 6, 2, 5], False),
]


def compare_with_torch(dtype, layers, bidirectional, batch_first, lengths, with_state, bias=True, seed=0):
    rng = np.random.default_rng(seed + layers)
    rnn = ln.LSTM(INPUTS, HIDDEN, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                  dtype=dtype, seed=seed, proj_size=PROJ, bias=bias)
    reference = torch.nn.LSTM(INPUTS, HIDDEN, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                              dtype=getattr(torch, dtype), proj_size=PROJ, bias=bias)
    assert list(rnn.state_dict()) == [name for name, _ in reference.named_parameters()]
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.state_dict().items()})
    dirs = 2 if bidirectional else 1
    x = rng.standard_normal((BATCH, STEPS, INPUTS) if batch_first else (STEPS, BATCH, INPUTS)).astype(dtype)
    h0 = rng.standard_normal((layers * dirs, BATCH, PROJ)).astype(dtype) * with_state
    c0 = rng.standard_normal((layers * dirs, BATCH, HIDDEN)).astype(dtype) * with_state
    y, (h_n, c_n) = rnn(x, (h0, c0) if with_state else None, lengths=lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh = rng.standard_normal(h_n.shape).astype(dtype)
    dc = rng.standard_normal(c_n.shape).astype(dtype)
    g = rnn.backward(dy, (dh, dc))
    yt, ht, ct, dxt, dh0t, dc0t, grads_t = run_torch(reference, x, h0, c0, lengths, batch_first, dy, dh, dc)
    tol = TOLERANCE[dtype]
    assert y.shape == (*x.shape[:2], dirs * PROJ) and h_n.shape == h0.shape and c_n.shape == c0.shape
    for name, ours, theirs in [("y", y, yt), ("h_n", h_n, ht), ("c_n", c_n, ct), ("dx", g.x, dxt),
                               ("dh0", g.state[0], dh0t), ("dc0", g.state[1], dc0t)]:
        assert ours.dtype == np.dtype(dtype) and ours.shape == theirs.shape, name
        assert max_rel_err(ours, theirs) <= tol, (name, max_rel_err(ours, theirs))
    assert set(g.params) == set(grads_t)
    for name, theirs in grads_t.items():
        assert max_rel_err(g.params[name], theirs) <= tol, (name, max_rel_err(g.params[name], theirs))
    if lengths is not None:
        for b, length in enumerate(lengths):
            out = y[b, length:] if batch_first else y[length:, b]
            assert not out.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_torch(dtype):
    for case in CASES:
        compare_with_torch(dtype, *case)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers,bidirectional,batch_first,lengths,with_state", CASES)
def test_matches_torch_both_tilings(dtype, layers, bidirectional, batch_first, lengths, with_state, tiling):
    compare_with_torch(dtype, layers, bidirectional, batch_first, lengths, with_state, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_torch_hoisted_input_projection_and_no_bias(dtype, monkeypatch):
    monkeypatch.setattr(engine_tiling, "fuses_input_projection", lambda *shape: False)
    compare_with_torch(dtype, 2, True, False, [3, 6, 6, 4], True, bias=False, seed=2)


def test_stream_and_every_state_of_a_projected_layer():
    """Float32 again (the kernels the torch test compiled): step over chunks is the forward
    bit for bit, and every step's h is y (P values), its c (H values) ends at c_n."""
    from test_streaming import stream

    rnn = ln.LSTM(INPUTS, HIDDEN, num_layers=2, dtype="float32", seed=3, proj_size=PROJ).eval()
    rng = np.random.default_rng(4)
    x = rng.standard_normal((STEPS, BATCH, INPUTS)).astype(np.float32)
    lengths = np.array([6, 2, 5, 1])
    y, (h_n, c_n), (h_all, c_all) = rnn(x, lengths=lengths, return_states=True)
    assert h_all.shape == (STEPS, BATCH, PROJ) and c_all.shape == (STEPS, BATCH, HIDDEN)
    assert np.array_equal(h_all, y)
    for b, length in enumerate(lengths):
        assert np.array_equal(c_all[length - 1, b], c_n[-1, b]) and not c_all[length:, b].any()
    for chunks in ([1] * STEPS, [2, 3, 1], [STEPS]):
        y_s, state = stream(rnn, x, chunks, rnn.initial_state(BATCH), lengths)
        assert np.array_equal(y_s, y), chunks
        assert state.h.shape == (2, BATCH, PROJ)
        assert np.array_equal(state.h, h_n) and np.array_equal(state.c, c_n), chunks


def _projected_fd(gate, seed=0, step=1e-6):
    """Finite differences of every parameter, x and (h0, c0, ...) through a 2-layer
    bidirectional float64 projected layer with lengths."""
    t, b, i, h, p = 3, 2, 2, 3, 2
    lengths = np.array([3, 2])
    rnn = ln.LSTM(i, h, num_layers=2, bidirectional=True, dtype="float64", seed=seed, gate=gate, proj_size=p)
    n_state = len(rnn.state_names)
    rng = np.random.default_rng(seed + 7)
    x = rng.normal(size=(t, b, i))
    widths = [p] + [h] * (n_state - 1)
    state0 = ng.random_state(gate, rng, (n_state, 4, b, h))
    state0 = [state0[0][..., :p].copy()] + [state0[k] for k in range(1, n_state)]
    wy = rng.normal(size=(t, b, 2 * p))
    ws = [rng.normal(size=(4, b, w)) for w in widths]

    def loss():
        y, final = rnn(x, tuple(state0), lengths=lengths, need_grad=False)
        return float(np.sum(wy * y) + sum(np.sum(w * f) for w, f in zip(ws, final)))

    rnn(x, tuple(state0), lengths=lengths)
    grads = rnn.backward(wy, tuple(ws))
    analytic = {f"param {k}": grads.params[k] for k in rnn.params}
    analytic["x"] = grads.x
    targets = {f"param {k}": v for k, v in rnn.params.items()}
    targets["x"] = x
    for k, name in enumerate(rnn.state_names):
        analytic[f"{name}0"], targets[f"{name}0"] = grads.state[k], state0[k]
    return worst_gradient_errors(loss, targets, analytic, step)


@pytest.mark.slow
@pytest.mark.parametrize("gate", ["lstm", "peephole", "coupled", "slstm"])
def test_projected_gradients_match_finite_differences(gate):
    worst = _projected_fd(gate)
    bad = {k: v for k, v in worst.items() if not v <= 1e-6}
    assert not bad, bad


def test_proj_size_is_checked():
    with pytest.raises(ValueError, match="proj_size"):
        ln.LSTM(3, 4, proj_size=4)
    with pytest.raises(ValueError, match="not projectable"):
        ln.GRU(3, 4, proj_size=2)
    with pytest.raises(ValueError, match=r"state \(h0\): expected shape \(1, 2, 2\)"):
        ln.LSTM(3, 4, proj_size=2)(np.zeros((5, 2, 3), np.float32), (np.zeros((1, 2, 4)), np.zeros((1, 2, 4))))
    rnn = ln.LSTM(3, 4, num_layers=2, proj_size=2)
    assert rnn.config()["proj_size"] == 2 and rnn.state_dict()["weight_ih_l1"].shape == (16, 2)
    assert rnn.state_dict()["weight_hh_l0"].shape == (16, 2) and rnn.state_dict()["weight_hr_l0"].shape == (2, 4)
