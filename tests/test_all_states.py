"""``forward(..., return_states=True)``: every state vector of the last layer after every
step, against the plain-NumPy references' own record of them (``naive_gates``), with
lengths, both directions and both tilings; and through ``step``.

Compile budget: lstm float32, gru and slstm float64, combinations the gate tests compile
anyway; the rest are ``slow``.
"""

from __future__ import annotations

import naive_gates as ng
import numpy as np
import pytest
from conftest import max_rel_err

import lstm_numba as ln

T, B, I, H, LAYERS = 6, 3, 3, 4, 2
LENGTHS = np.array([6, 2, 5])


def _as_tuple(packed, n_state):
    return (packed,) if n_state == 1 else tuple(packed)


def check_every_state(gate, dtype, tol, bidirectional=True, batch_first=False, seed=0):
    rnn = ln.LSTM(I, H, num_layers=LAYERS, bidirectional=bidirectional, batch_first=batch_first, dtype=dtype,
                  seed=seed, gate=gate)
    n_state, dirs = len(rnn.state_names), 2 if bidirectional else 1
    rng = np.random.default_rng(seed + 20)
    x = rng.normal(size=(T, B, I)).astype(dtype)
    state0 = ng.random_state(gate, rng, (n_state, LAYERS * dirs, B, H)).astype(dtype)
    swap = (lambda a: np.ascontiguousarray(a.swapaxes(0, 1))) if batch_first else (lambda a: a)
    packed0 = state0[0] if n_state == 1 else tuple(state0)
    y, final, every = rnn(swap(x), packed0, lengths=LENGTHS, return_states=True)
    every = [swap(v) for v in _as_tuple(every, n_state)]

    ref = ng.NaiveRNN(gate, rnn.state_dict(), LAYERS, bidirectional)
    ref.forward(x, state0, LENGTHS)
    assert len(every) == n_state
    for k, name in enumerate(rnn.state_names):
        assert every[k].shape == (T, B, dirs * H) and every[k].dtype == np.dtype(dtype), name
        assert max_rel_err(every[k], ref.every[k]) <= tol, (name, max_rel_err(every[k], ref.every[k]))
        for b, length in enumerate(LENGTHS):
            assert not every[k][length:, b].any(), name        # zeros at padded steps, as y
            last = final[k] if n_state > 1 else final
            # the forward direction's state after the row's last step is its final state
            assert np.array_equal(every[k][length - 1, b, :H], last[-dirs, b]), name
            if bidirectional:  # the reverse direction ends at t = 0
                assert np.array_equal(every[k][0, b, H:], last[-1, b]), name
    assert np.array_equal(every[0], swap(y))                    # h is y, bit for bit
    return rnn, x, packed0


@pytest.mark.parametrize("gate, dtype, tol", [("lstm", "float32", 1e-5), ("slstm", "float64", 1e-12)])
def test_every_state_matches_the_reference(gate, dtype, tol, tiling):
    check_every_state(gate, dtype, tol)


def test_every_state_single_state_gate_batch_first():
    rnn, x, h0 = check_every_state("gru", "float64", 1e-12, batch_first=True, seed=1)
    _, _, every = rnn(x.swapaxes(0, 1), h0, lengths=LENGTHS, return_states=True)
    assert isinstance(every, np.ndarray) and every.shape == (B, T, 2 * H)   # GRU: h alone, as its state


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("gate", ["peephole", "coupled", "gru", "lstm", "slstm"])
def test_every_state_all_gates(gate, dtype, tol, tiling):
    check_every_state(gate, dtype, tol, bidirectional=False, seed=3)


def test_return_states_keeps_the_gradients_and_the_outputs():
    rnn = ln.LSTM(I, H, num_layers=LAYERS, bidirectional=True, dtype="float64", seed=4)
    x = np.random.default_rng(5).normal(size=(T, B, I))
    dy = np.random.default_rng(6).normal(size=(T, B, 2 * H))
    y, (h, c) = rnn(x, lengths=LENGTHS)
    g = rnn.backward(dy)
    y2, (h2, c2), (every_h, every_c) = rnn(x, lengths=LENGTHS, return_states=True)
    g2 = rnn.backward(dy)
    assert np.array_equal(y, y2) and np.array_equal(h, h2) and np.array_equal(c, c2)
    for key, value in g.params.items():
        assert np.array_equal(value, g2.params[key]), key
    y3, _, (every_h3, every_c3) = rnn.eval()(x, lengths=LENGTHS, return_states=True)  # inference keeps them too
    assert np.array_equal(every_c3, every_c) and np.array_equal(y3, y)


def test_step_returns_every_state_of_the_chunk():
    rnn = ln.LSTM(I, H, num_layers=LAYERS, dtype="float32", seed=7).eval()
    x = np.random.default_rng(8).normal(size=(T, B, I)).astype(np.float32)
    _, _, (_, every_c) = rnn(x, return_states=True)
    y, state, (h_chunk, c_chunk) = rnn.step(x[:4], rnn.initial_state(B), return_states=True)
    y_t, state, (h_t, c_t) = rnn.step(x[4], state, return_states=True)
    assert np.array_equal(h_chunk, y) and np.array_equal(c_chunk, every_c[:4])
    assert h_t.shape == (B, H) and np.array_equal(c_t, every_c[4]) and np.array_equal(h_t, y_t)
