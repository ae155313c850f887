"""Attention: the compiled forward against a NumPy reference written from the equations,
its gradients against float64 finite differences, and the decoders on hand-made tables."""

import numpy as np
import pytest

from lstm_numba.nn.attention import Attention
from lstm_numba.nn.decoding import beam_search, greedy_search

#: Each test here compiles kernels no other default test does (about 4 minutes of the
#: default suite on a 2-core machine together): they run in CI's slow pass.
pytestmark = pytest.mark.slow


def reference_context(kind, params, query, memory, lengths):
    if kind == "dot":
        scores = np.einsum("btd,bsd->bts", query, memory)
    elif kind == "general":
        scores = np.einsum("btd,bsd->bts", query @ params["weight"].T, memory)
    else:
        qa, ka = query @ params["query.weight"].T, memory @ params["key.weight"].T
        scores = np.tanh(qa[:, :, None, :] + ka[:, None, :, :]) @ params["v"]
    mask = np.arange(memory.shape[1])[None, None, :] < lengths[:, None, None]
    scores = np.where(mask, scores, -np.inf)
    p = np.exp(scores - scores.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    return np.einsum("bts,bse->bte", p, memory)


def _case(kind, seed=0):
    rng = np.random.default_rng(seed)
    width = 4
    att = Attention(kind, width, width, "float64", rng, additive_size=3)
    query = rng.standard_normal((3, 2, width))
    memory = rng.standard_normal((3, 5, width))
    lengths = np.array([5, 2, 3])
    return att, query, memory, lengths


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_forward_matches_numpy_reference(kind):
    att, query, memory, lengths = _case(kind)
    got = att.forward(query, memory, lengths)
    want = reference_context(kind, att.params, query, memory, lengths)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.all(att.probs[1, :, 2:] == 0)  # steps past a row's length get no weight


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_gradients_match_finite_differences(kind):
    att, query, memory, lengths = _case(kind, seed=1)
    weights = np.random.default_rng(2).standard_normal((3, 2, 4))
    loss = lambda: float(np.sum(reference_context(kind, att.params, query, memory, lengths) * weights))  # noqa: E731
    att.forward(query, memory, lengths)
    grads, dquery, dmemory = att.backward(weights)
    arrays = {"query": (query, dquery), "memory": (memory, dmemory),
              **{k: (att.params[k], grads[k]) for k in att.params}}
    assert set(grads) == set(att.params)
    for name, (array, analytic) in arrays.items():
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            old = array[i]
            array[i] = old + 1e-6
            up = loss()
            array[i] = old - 1e-6
            down = loss()
            array[i] = old
            numeric[i] = (up - down) / 2e-6
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def _table_step(table):
    """A step function whose next-token distribution depends only on the prefix so far."""
    def step(tokens, state):
        prefixes = [p + [int(t)] for p, t in zip(state, tokens)]
        with np.errstate(divide="ignore"):  # impossible tokens: log 0 = -inf
            rows = [np.log(table.get(tuple(p[1:]), table["*"])) for p in prefixes]
        return np.array(rows), prefixes
    return step


# tokens: 0 = bos, 1 = eos, 2 = "a", 3 = "b"
TABLE = {(): np.array([0.0, 0.0, 0.6, 0.4]),          # greedy takes "a" ...
         (2,): np.array([0.0, 0.3, 0.35, 0.35]),     # ... then nothing is likely
         (3,): np.array([0.0, 0.95, 0.025, 0.025]),  # "b" then eos: 0.4 * 0.95 = 0.38
         "*": np.array([0.0, 0.9, 0.05, 0.05])}


def test_beam_one_equals_greedy_and_a_wider_beam_finds_the_better_sequence():
    step = _table_step(TABLE)
    reorder = lambda state, rows: [state[r] for r in rows]  # noqa: E731
    greedy = greedy_search(step, [[]], 1, 0, 1, 5)[0]
    assert greedy == [2, 2]  # a, a, eos: 0.6 * 0.35 * 0.9 = 0.189
    assert beam_search(step, [[]], reorder, 0, 1, 5, width=1, length_penalty=0.0) == greedy
    assert beam_search(step, [[]], reorder, 0, 1, 5, width=2, length_penalty=0.0) == [3]  # b, eos: 0.38


def test_length_normalisation_prefers_the_longer_sequence_it_favours():
    # eos now: 0.5; "a" then eos: 0.5 * 0.9 = 0.45 -> raw prefers [], per-token mean prefers [a]
    table = {(): np.array([0.0, 0.5, 0.5, 0.0]), (2,): np.array([0.0, 0.9, 0.1, 0.0]),
             "*": np.array([0.0, 1.0, 0.0, 0.0])}
    reorder = lambda state, rows: [state[r] for r in rows]  # noqa: E731
    step = _table_step(table)
    assert beam_search(step, [[]], reorder, 0, 1, 5, width=2, length_penalty=0.0) == []
    assert beam_search(step, [[]], reorder, 0, 1, 5, width=2, length_penalty=1.0) == [2]
