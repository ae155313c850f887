"""CTC decoding of one utterance's per-step log-probabilities: greedy (best path) and
prefix beam search, the latter optionally constrained to a word list.

``log_probs`` is (T, C), log-softmax over C classes of which ``blank`` is one; decoders
return the label sequence (a list of class indices, blanks and repeats collapsed).
"""

from __future__ import annotations

import numpy as np

__all__ = ["greedy_decode", "prefix_beam_decode", "WordConstraint"]


def greedy_decode(log_probs: np.ndarray, blank: int = 0) -> list[int]:
    """The best path: the most probable class at each step, repeats merged, blanks dropped."""
    best = np.asarray(log_probs).argmax(axis=1)
    out, previous = [], blank
    for label in best.tolist():
        if label != previous and label != blank:
            out.append(label)
        previous = label
    return out


class WordConstraint:
    """Which label prefixes spell a sequence of words from ``words``.

    ``separator`` is the label between words (the space). A prefix is allowed while every
    finished word is in the list and the word being spelt begins some word of the list.
    ``words`` are label sequences (tuples of ints).
    """

    def __init__(self, words, separator: int):
        self.separator = separator
        self.words = {tuple(w) for w in words}
        self.stems = {w[:k] for w in self.words for k in range(len(w) + 1)}

    def allows(self, prefix: tuple, complete: bool = False) -> bool:
        """Whether ``prefix`` can continue into (``complete``: already is) a word sequence."""
        word = []
        for label in prefix:
            if label == self.separator:
                if tuple(word) not in self.words:
                    return False
                word = []
            else:
                word.append(label)
        return tuple(word) in (self.words if complete else self.stems)


def prefix_beam_decode(log_probs: np.ndarray, beam_width: int = 8, blank: int = 0,
                       constraint: WordConstraint | None = None) -> list[int]:
    """Prefix beam search: keeps the ``beam_width`` label prefixes of highest total
    probability (summed over all their alignments, split into ending in blank or not).

    With a ``constraint``, extensions that leave its word list are dropped and the answer
    is the best prefix that is a complete word sequence (greedy's answer if none is).
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2 or log_probs.shape[0] == 0:
        raise ValueError(f"log_probs must be (T, C) with T >= 1, got shape {log_probs.shape}")
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    neg_inf = -np.inf
    beams = {(): (0.0, neg_inf)}  # prefix -> (log P ending in blank, log P ending in a label)
    for frame in log_probs:
        following: dict[tuple, list[float]] = {}

        def add(prefix, in_blank, in_label):
            slot = following.setdefault(prefix, [neg_inf, neg_inf])
            slot[0] = np.logaddexp(slot[0], in_blank)
            slot[1] = np.logaddexp(slot[1], in_label)

        for prefix, (p_blank, p_label) in beams.items():
            total = np.logaddexp(p_blank, p_label)
            add(prefix, total + frame[blank], neg_inf)
            last = prefix[-1] if prefix else None
            for c in range(frame.size):
                if c == blank:
                    continue
                if c == last:
                    add(prefix, neg_inf, p_label + frame[c])      # the repeat merges
                    extended = p_blank + frame[c]                 # a new label after a blank
                else:
                    extended = total + frame[c]
                candidate = prefix + (c,)
                if constraint is not None and not constraint.allows(candidate):
                    continue
                add(candidate, neg_inf, extended)
        ranked = sorted(following.items(), key=lambda kv: -np.logaddexp(*kv[1]))
        beams = {prefix: tuple(p) for prefix, p in ranked[:beam_width]}
    ranked = sorted(beams.items(), key=lambda kv: -np.logaddexp(*kv[1]))
    for prefix, _ in ranked:
        if constraint is None or constraint.allows(prefix, complete=True):
            return list(prefix)
    return greedy_decode(log_probs, blank)
