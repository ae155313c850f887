"""Compiled edit distance: the nearest training sequence of each query (a baseline)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lstm_numba.config import FASTMATH


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def nearest_by_edit_distance(queries, query_lengths, corpus, corpus_lengths, nearest):
    """For each query, the index of the corpus sequence at the smallest Levenshtein
    distance (the first on ties).

    queries (Q, L) int64 ids, query_lengths (Q,), corpus (N, M) int64 ids,
    corpus_lengths (N,), nearest (Q,) int64 written."""
    n_queries = queries.shape[0]
    width = corpus.shape[1]
    for q in prange(n_queries):
        row = np.empty(width + 1, dtype=np.int64)
        lq = query_lengths[q]
        best, best_index = 1 << 60, 0
        for n in range(corpus.shape[0]):
            ln = corpus_lengths[n]
            if abs(ln - lq) >= best:
                continue
            for j in range(ln + 1):
                row[j] = j
            for i in range(1, lq + 1):
                diagonal = row[0]
                row[0] = i
                for j in range(1, ln + 1):
                    above = row[j]
                    cost = 0 if queries[q, i - 1] == corpus[n, j - 1] else 1
                    row[j] = min(min(above + 1, row[j - 1] + 1), diagonal + cost)
                    diagonal = above
            if row[ln] < best:
                best, best_index = row[ln], n
        nearest[q] = best_index
