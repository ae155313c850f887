"""CTC loss against torch.nn.CTCLoss and a brute-force sum over alignments; CTC decoding
on hand-made probability tables."""

import itertools

import numpy as np
import pytest

from lstm_numba.nn.ctc import ctc_loss
from lstm_numba.nn.ctc_decode import WordConstraint, greedy_decode, prefix_beam_decode

torch = pytest.importorskip("torch")

# Compiles the CTC kernel, which no other default test does.
compiled = pytest.mark.slow


def _torch_ctc(logits, targets, input_lengths, reduction, zero_infinity, blank=0):
    x = torch.tensor(logits, requires_grad=True)
    flat = torch.tensor(np.concatenate([np.asarray(t, np.int64) for t in targets]))
    loss = torch.nn.functional.ctc_loss(
        torch.log_softmax(x, dim=2), flat, torch.tensor(input_lengths),
        torch.tensor([len(t) for t in targets]), blank=blank, reduction=reduction,
        zero_infinity=zero_infinity)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


# Row 0 repeats a label (needs a blank between the 1s), row 1 is shorter than T,
# row 2 has an empty target.
TARGETS = [[1, 1, 2], [3, 2], []]
INPUT_LENGTHS = [6, 4, 5]


@compiled
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_ctc_matches_torch(reduction):
    logits = np.random.default_rng(0).normal(size=(6, 3, 4))
    loss, grad = ctc_loss(logits, TARGETS, INPUT_LENGTHS, reduction=reduction)
    want_loss, want_grad = _torch_ctc(logits, TARGETS, INPUT_LENGTHS, reduction, False)
    np.testing.assert_allclose(loss, want_loss, rtol=1e-10)
    np.testing.assert_allclose(grad, want_grad, atol=1e-10)
    assert not grad[4:, 1].any() and not grad[5:, 2].any()  # padded steps


@compiled
def test_ctc_zero_infinity_and_blank_choice():
    logits = np.random.default_rng(1).normal(size=(4, 2, 5))
    targets = [[1, 1, 1], [2, 4]]          # row 0 needs 5 steps but has 3: impossible
    lengths = [3, 4]
    for zero_inf in (True, False):
        loss, grad = ctc_loss(logits, targets, lengths, reduction="none",
                              zero_infinity=zero_inf, blank=3)
        want_loss, want_grad = _torch_ctc(logits, targets, lengths, "none", zero_inf, blank=3)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-10)
        if zero_inf:
            np.testing.assert_allclose(grad, want_grad, atol=1e-10)
            assert loss[0] == 0 and not grad[:, 0].any()
        else:
            assert loss[0] == np.inf
            np.testing.assert_allclose(grad[:, 1], want_grad[:, 1], atol=1e-10)


@compiled
def test_ctc_equals_brute_force_sum_over_alignments():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 1, 3))
    target = [1, 2, 2]
    log_p = logits[:, 0] - np.log(np.exp(logits[:, 0]).sum(axis=1, keepdims=True))
    total = 0.0
    for path in itertools.product(range(3), repeat=5):
        collapsed = [c for k, c in enumerate(path) if c != 0 and (k == 0 or c != path[k - 1])]
        if collapsed == target:
            total += np.exp(sum(log_p[t, c] for t, c in enumerate(path)))
    loss, _ = ctc_loss(logits, [target], reduction="sum")
    np.testing.assert_allclose(loss, -np.log(total), rtol=1e-12)


def test_ctc_bad_input_names_the_argument():
    logits = np.zeros((3, 1, 3))
    with pytest.raises(ValueError, match="blank"):
        ctc_loss(logits, [[0, 1]])
    with pytest.raises(ValueError, match="input_lengths"):
        ctc_loss(logits, [[1]], [4])
    with pytest.raises(ValueError, match="reduction"):
        ctc_loss(logits, [[1]], reduction="avg")


def _table(rows):
    return np.log(np.asarray(rows, dtype=np.float64))


def test_greedy_collapses_repeats_and_drops_blanks():
    # classes: 0 blank, 1 'a', 2 'b'
    table = _table([[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8]])
    assert greedy_decode(table) == [1, 1, 2]


def test_prefix_beam_beats_greedy_when_alignments_add_up():
    # Greedy reads blank, blank (P("") = .36); "a" totals .16 + .24 + .24 = .64.
    table = _table([[.6, .4], [.6, .4]])
    assert greedy_decode(table) == []
    assert prefix_beam_decode(table, beam_width=4) == [1]
    assert prefix_beam_decode(table, beam_width=1) == []  # a beam of 1 is greedy's here


def test_prefix_beam_word_constraint_keeps_listed_words():
    # classes: 0 blank, 1 'a', 2 'b', 3 space; the audio says "ab", which is not a word
    table = _table([[.1, .7, .1, .1], [.2, .1, .6, .1]])
    assert prefix_beam_decode(table, beam_width=8) == [1, 2]
    words = WordConstraint([[1], [2]], separator=3)
    assert prefix_beam_decode(table, beam_width=8, constraint=words) == [1]
    assert words.allows((1, 3, 2)) and not words.allows((1, 2))
