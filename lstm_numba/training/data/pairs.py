"""Parallel text for translation: TSV pairs, the generated number corpus, tokens, vocabularies.

Tokens are words: text is split at spaces, and a hyphen is a token of its own
(``"quatre-vingt-dix"`` -> ``quatre - vingt - dix``); :func:`detokenize` joins them back
(single spaces, no space around a hyphen).
"""

from __future__ import annotations

import os
import re

import numpy as np

from lstm_numba.training.config import TrainingError

SPECIALS = ("<pad>", "<bos>", "<eos>")  # ids 0, 1, 2 of every vocabulary
_TOKEN = re.compile(r"-|[^\s-]+")


def tokenize(text: str) -> list:
    return _TOKEN.findall(text)


def detokenize(tokens) -> str:
    return re.sub(r" ?- ?", "-", " ".join(tokens))


class TokenVocab:
    """Token <-> id; ids 0-2 are ``SPECIALS``."""

    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_texts(cls, texts):
        return cls(list(SPECIALS) + sorted({t for text in texts for t in tokenize(text)}))

    @property
    def size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str, label: str = "text") -> list:
        tokens = tokenize(text)
        unknown = sorted({t for t in tokens if t not in self.index})
        if unknown:
            raise ValueError(f"{label}: {len(unknown)} word(s) outside the vocabulary: "
                             f"{', '.join(map(repr, unknown[:10]))}")
        if not tokens:
            raise ValueError(f"{label}: empty text")
        return [self.index[t] for t in tokens]

    def decode(self, ids) -> str:
        return detokenize(self.tokens[i] for i in ids if i >= len(SPECIALS))

    def to_dict(self) -> dict:
        return {"tokens": self.tokens}

    @classmethod
    def from_dict(cls, d):
        return cls(d["tokens"])


def read_pairs(path) -> list:
    """``[(source, target), ...]`` from a UTF-8 TSV of ``source<TAB>target`` lines (blank
    lines skipped); errors name the file and line."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) != 2 or not cells[0].strip() or not cells[1].strip():
                raise TrainingError(f"{path}: line {number}: expected 'source<TAB>target' (two non-empty "
                                    f"tab-separated columns), got {len(cells)} column(s)")
            pairs.append((cells[0].strip(), cells[1].strip()))
    if len(pairs) < 2:
        raise TrainingError(f"{path}: expected at least 2 'source<TAB>target' lines, got {len(pairs)}")
    return pairs


def number_pairs(seed: int, n_train: int, n_heldout: int, small_repeats: int):
    """English -> French number words for numbers below one million, from ``num2words``.

    ``n_heldout`` numbers drawn with ``seed`` are held out; training holds every other
    number below 1,000 ``small_repeats`` times and ``n_train`` other numbers from 1,000 up.
    Returns ``(train_pairs, heldout_pairs)``.
    """
    from lstm_numba.formats import require

    num2words = require("num2words", "translate", "the default translation corpus").num2words
    rng = np.random.default_rng(seed)
    drawn = rng.choice(1_000_000, size=n_heldout + n_train + 1000, replace=False)
    heldout = drawn[:n_heldout]
    held = set(heldout.tolist())
    large = [int(n) for n in drawn[n_heldout:] if n >= 1000][:n_train]
    small = [n for n in range(1000) if n not in held] * small_repeats
    pair = lambda n: (num2words(n, lang="en"), num2words(n, lang="fr"))  # noqa: E731
    cache = {n: pair(n) for n in set(large) | set(small)}
    return [cache[n] for n in large + small], [pair(int(n)) for n in heldout]
