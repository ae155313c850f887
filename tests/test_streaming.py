"""Streaming inference: ``LSTM.initial_state`` and ``LSTM.step`` over one step or a chunk of
steps at a time give, bit for bit, what ``forward`` gives over the whole sequence, however
the sequence is cut, with lengths, several layers and either tiling.

Compile budget: the default run streams lstm in float32 and gru in float64 (gru is not
additive, so its input projection is always hoisted, in tasks of whole steps that a chunk
must reproduce); the other gates are ``slow``.
"""

from __future__ import annotations

import naive_gates as ng
import numpy as np
import pytest

import lstm_numba as ln
from lstm_numba.engine import tiling as engine_tiling

T, B, I, H, LAYERS = 13, 3, 4, 6, 2
LENGTHS = np.array([13, 5, 9])
#: Chunk sizes that add up to T: single steps, uneven chunks across the projection's 8-step
#: tasks, the whole sequence at once.
CHUNKINGS = [[1] * T, [5, 4, 4], [3, 1, 7, 2], [8, 5], [T]]


def _pack(stacked):
    return stacked[0] if len(stacked) == 1 else tuple(stacked)


def _problem(gate, dtype, seed=0):
    rnn = ln.LSTM(I, H, num_layers=LAYERS, dtype=dtype, seed=seed, gate=gate).eval()
    rng = np.random.default_rng(seed + 50)
    x = rng.normal(size=(T, B, I)).astype(dtype)
    state0 = ng.random_state(gate, rng, (len(rnn.state_names), LAYERS, B, H)).astype(dtype)
    return rnn, x, state0


def stream(rnn, x, chunks, state, lengths=None, one_step_api=True):
    """Feed ``x`` to ``rnn.step`` in ``chunks``; single steps as (B, I) when ``one_step_api``."""
    ys, t = [], 0
    for n in chunks:
        part = None if lengths is None else np.clip(lengths - t, 0, n)
        if n == 1 and one_step_api and part is None:
            y, state = rnn.step(x[t], state)
            assert y.shape == (x.shape[1], rnn.hidden_size)
            y = y[None]
        else:
            y, state = rnn.step(x[t:t + n], state, lengths=part)
        ys.append(y)
        t += n
    assert state.steps == t == x.shape[0]
    return np.concatenate(ys), state


def assert_stream_matches_forward(gate, dtype, lengths=LENGTHS):
    rnn, x, state0 = _problem(gate, dtype)
    y_full, final = rnn(x, _pack(state0), lengths=lengths)
    final = np.stack(final) if isinstance(final, tuple) else final[None]
    for chunks in CHUNKINGS:
        y, state = stream(rnn, x, chunks, rnn.initial_state(B, _pack(state0)), lengths)
        assert y.dtype == np.dtype(dtype)
        assert np.array_equal(y, y_full), chunks
        for k, name in enumerate(rnn.state_names):
            assert np.array_equal(getattr(state, name), final[k]), (chunks, name)


@pytest.mark.parametrize("gate, dtype", [("lstm", "float32"), ("gru", "float64")])
def test_stream_is_bitwise_the_whole_sequence_forward(gate, dtype, tiling):
    assert_stream_matches_forward(gate, dtype)


def test_stream_with_a_hoisted_input_projection(monkeypatch):
    """The LSTM's input projection hoisted out of the step (as without OpenBLAS's
    small-matrix kernel), in tasks of 8 steps that chunks start and end inside."""
    monkeypatch.setattr(engine_tiling, "fuses_input_projection", lambda *shape: False)
    assert engine_tiling.projection_blocks(B, 4 * H, I + 1, 4, False).steps == 8
    assert_stream_matches_forward("lstm", "float32", lengths=None)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gate", ["peephole", "coupled", "slstm", "indrnn", "mingru", "minlstm",
                                  "layernorm_gru", "layernorm_lstm"])
def test_stream_other_gates(gate, dtype, tiling):
    assert_stream_matches_forward(gate, dtype)


def test_stream_continues_a_forward_and_a_forward_is_prefix_consistent():
    """A forward over the first steps, then a stream from its final state: the whole
    sequence's bits. (So a forward's outputs do not depend on how long the sequence is.)"""
    rnn, x, state0 = _problem("gru", "float64", seed=1)
    y_full, h_full = rnn(x, state0[0])
    y_head, h_head = rnn(x[:6], state0[0])
    assert np.array_equal(y_head, y_full[:6])
    y_tail, state = rnn.step(x[6:], rnn.initial_state(B, h_head, steps=6))
    assert np.array_equal(y_tail, y_full[6:]) and np.array_equal(state.h, h_full)
    assert np.array_equal(state.state, h_full)  # single-state gate: the state is h itself


def test_step_api_shapes_batch_first_and_state():
    rnn = ln.LSTM(I, H, num_layers=LAYERS, dtype="float32", seed=2, batch_first=True)
    state = rnn.initial_state(B)
    assert state.steps == 0 and state.names == ("h", "c")
    assert state.h.shape == state.c.shape == (LAYERS, B, H) and not state.h.any()
    x = np.random.default_rng(3).normal(size=(B, 7, I)).astype(np.float32)   # batch-first chunk
    y, state = rnn.step(x[:, :4], state)
    assert y.shape == (B, 4, H) and state.steps == 4
    y_t, state = rnn.step(x[:, 4], state)                                     # one step: (B, I)
    assert y_t.shape == (B, H)
    y_rest, state = rnn.step(x[:, 5:], state)
    y_full, (h, c) = rnn.eval()(x)
    assert np.array_equal(np.concatenate([y, y_t[:, None], y_rest], axis=1), y_full)
    assert np.array_equal(state.state[0], h) and np.array_equal(state.state[1], c)
    assert "steps=7" in repr(state)


def test_step_runs_as_eval_and_leaves_the_training_tape_alone():
    """In training mode too, step applies no dropout, and a step between a forward and its
    backward changes no gradient."""
    x = np.random.default_rng(5).normal(size=(T, B, I))
    dy = np.random.default_rng(6).normal(size=(T, B, H))
    rnn = ln.LSTM(I, H, num_layers=LAYERS, dropout=0.5, dtype="float64", seed=4)
    rnn(x)
    g = rnn.backward(dy)
    twin = ln.LSTM(I, H, num_layers=LAYERS, dropout=0.5, dtype="float64", seed=4)  # draws the same masks
    twin(x)
    y_stream, _ = twin.step(x, twin.initial_state(B))
    g2 = twin.backward(dy)
    for key, value in g.params.items():
        assert np.array_equal(value, g2.params[key]), key
    assert np.array_equal(g.x, g2.x)
    assert np.array_equal(y_stream, twin.eval()(x)[0])


def test_step_refuses_what_cannot_stream():
    bi = ln.LSTM(I, H, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        bi.step(np.zeros((B, I), np.float32))
    rnn = ln.LSTM(I, H)
    with pytest.raises(ValueError, match=r"lengths: values must be in 0..T=2"):
        rnn.step(np.zeros((2, B, I), np.float32), lengths=[3, 0, 1])
    with pytest.raises(ValueError, match="input_size=4"):
        rnn.step(np.zeros((B, 5), np.float32))
    with pytest.raises(ValueError, match="states"):
        rnn.step(np.zeros((B, I), np.float32), ln.GRU(I, H).initial_state(B))
    with pytest.raises(ValueError, match="steps"):
        rnn.initial_state(B, steps=-1)


def test_stream_sees_parameters_changed_in_place():
    """step keeps the weights' layout between calls, but not past an in-place update."""
    rnn, x, state0 = _problem("lstm", "float32", seed=7)
    rnn.step(x[:4], rnn.initial_state(B))
    rnn.params["weight_hh_l1"] *= np.float32(0.5)  # as an optimiser updates them
    rnn.params["bias_ih_l0"][2] += np.float32(1.0)
    y, _ = rnn.step(x, rnn.initial_state(B))
    assert np.array_equal(y, rnn(x)[0])
