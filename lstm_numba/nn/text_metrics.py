"""Translation metrics: exact match, chrF (Popovic 2015) and the nearest-neighbour baseline."""

from __future__ import annotations

from collections import Counter

import numpy as np

from lstm_numba.engine.kernels.strings import nearest_by_edit_distance


def exact_match(hypotheses, references) -> float:
    return float(np.mean([h == r for h, r in zip(hypotheses, references)]))


def chrf(hypotheses, references, order: int = 6, beta: float = 2.0) -> float:
    """Corpus chrF in [0, 100]: character n-gram (n = 1..order, spaces removed) precision and
    recall summed over the corpus per order, averaged over the orders, combined as F-beta
    (sacrebleu's default chrF, its ``eps_smoothing`` variant)."""
    precision, recall = [], []
    for n in range(1, order + 1):
        match = hyp_total = ref_total = 0
        for h, r in zip(hypotheses, references):
            hg = Counter(_ngrams(h, n))
            rg = Counter(_ngrams(r, n))
            match += sum((hg & rg).values())
            hyp_total += sum(hg.values())
            ref_total += sum(rg.values())
        precision.append(match / hyp_total if hyp_total else 0.0)
        recall.append(match / ref_total if ref_total else 0.0)
    p, r = float(np.mean(precision)), float(np.mean(recall))
    if p + r == 0:
        return 0.0
    return 100.0 * (1 + beta ** 2) * p * r / (beta ** 2 * p + r)


def _ngrams(text, n):
    text = text.replace(" ", "")
    return [text[i:i + n] for i in range(len(text) - n + 1)]


def pad_ids(sequences) -> tuple:
    """``(ids (N, max_len) int64, lengths (N,))`` with zero padding."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    ids = np.zeros((len(sequences), max(1, int(lengths.max(initial=1)))), dtype=np.int64)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = s
    return ids, lengths


def nearest_neighbour(queries, corpus) -> np.ndarray:
    """Index into ``corpus`` (sequences of ids) of each query's nearest sequence by edit distance."""
    q, ql = pad_ids(queries)
    c, cl = pad_ids(corpus)
    nearest = np.empty(len(queries), dtype=np.int64)
    nearest_by_edit_distance(q, ql, c, cl, nearest)
    return nearest
