"""Character language modelling data: the vocabulary, sequences, parallel streams and
truncated-BPTT chunks.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


class CharVocab:
    """Character vocabulary: ids ``0..size-1`` for the sorted distinct characters."""

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("vocabulary must be distinct single characters")
        self._index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        """Vocabulary of every character in ``text``."""
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def size(self) -> int:
        """Number of characters."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``(len(text),)`` int64 ids; a character outside the vocabulary raises."""
        try:
            return np.fromiter((self._index[c] for c in text), dtype=np.int64,
                               count=len(text))
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        """Text of a 1-D sequence of ids."""
        return "".join(self.chars[i] for i in np.asarray(ids).ravel())

    def to_dict(self) -> dict:
        """JSON-serialisable state: ``{"chars": [...]}``."""
        return {"chars": list(self.chars)}

    @classmethod
    def from_dict(cls, state: dict) -> "CharVocab":
        """Inverse of :meth:`to_dict`."""
        return cls(state["chars"])


def make_char_sequences(ids, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping training sequences from a 1-D id stream.

    Returns ``(inputs, targets)``, both ``(n, seq_len)`` int64 with
    ``n = (len(ids) - 1) // seq_len``; ``targets`` is ``inputs`` shifted one character on.
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise ValueError(
            f"text too short: seq_len {seq_len} needs at least {seq_len + 1} "
            f"characters, got {len(ids)}"
        )
    inputs = ids[: n * seq_len].reshape(n, seq_len)
    targets = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return inputs, targets


def batchify_stream(ids, batch_size: int) -> np.ndarray:
    """Split a 1-D id stream into ``batch_size`` contiguous parallel streams.

    Returns ``(n_steps, batch_size)`` with ``n_steps = len(ids) // batch_size``: column
    ``b`` is ``ids[b * n_steps : (b + 1) * n_steps]``; the remainder is dropped (as the
    PyTorch word_language_model example does).
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    n_steps = len(ids) // batch_size if batch_size >= 1 else 0
    if n_steps < 2:
        raise ValueError(
            f"stream of {len(ids)} ids too short for batch_size {batch_size} "
            f"(needs at least {2 * max(batch_size, 1)})"
        )
    return np.ascontiguousarray(ids[: n_steps * batch_size].reshape(batch_size, n_steps).T)


def iterate_bptt(stream: np.ndarray, bptt: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive truncated-BPTT chunks of a :func:`batchify_stream` array.

    Yields ``(inputs, targets)``, both ``(L, B)`` with ``L <= bptt``: ``inputs`` are rows
    ``i .. i+L-1`` and ``targets`` rows ``i+1 .. i+L``, for ``i = 0, bptt, 2*bptt, ...``.
    Chunk ``k+1`` continues chunk ``k`` in every column, so the state can be carried over.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    for i in range(0, len(stream) - 1, bptt):
        length = min(bptt, len(stream) - 1 - i)
        yield stream[i : i + length], stream[i + 1 : i + 1 + length]
