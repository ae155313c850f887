"""Compiled attention: scores, masked softmax, context vectors and their gradients.

Letters: ``B`` batch rows, ``T`` decoder (query) steps, ``S`` encoder (key) steps, ``D``
query/key width, ``E`` value width, ``A`` the additive score's hidden width. Every kernel
runs in parallel over the batch rows (``prange`` over ``b``); each row's sums run in a
fixed order, so results are bitwise the same for any thread count. Parameter gradients
that sum over rows are written per row (``*_rows``) and summed by the caller in row order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lstm_numba.config import FASTMATH

_JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)


@njit(parallel=True, **_JIT)
def dot_scores(query, keys, scores):
    """``scores[b, t, s] = query[b, t] . keys[b, s]``.

    query (B, T, D), keys (B, S, D), scores (B, T, S) written."""
    batch, steps, width = query.shape
    sources = keys.shape[1]
    for b in prange(batch):
        for t in range(steps):
            for s in range(sources):
                acc = 0.0
                for d in range(width):
                    acc += query[b, t, d] * keys[b, s, d]
                scores[b, t, s] = acc


@njit(parallel=True, **_JIT)
def dot_scores_backward(dscores, query, keys, dquery, dkeys):
    """Gradients of :func:`dot_scores`: ``dquery = dscores @ keys`` (written) and
    ``dkeys += dscores^T @ query`` (accumulated).

    dscores (B, T, S), query (B, T, D), keys (B, S, D), dquery (B, T, D), dkeys (B, S, D)."""
    batch, steps, width = query.shape
    sources = keys.shape[1]
    for b in prange(batch):
        for t in range(steps):
            for d in range(width):
                dquery[b, t, d] = 0.0
            for s in range(sources):
                g = dscores[b, t, s]
                for d in range(width):
                    dquery[b, t, d] += g * keys[b, s, d]
                    dkeys[b, s, d] += g * query[b, t, d]


@njit(parallel=True, **_JIT)
def additive_scores(query_proj, key_proj, v, scores):
    """Bahdanau's score ``scores[b, t, s] = v . tanh(query_proj[b, t] + key_proj[b, s])``.

    query_proj (B, T, A), key_proj (B, S, A), v (A,), scores (B, T, S) written."""
    batch, steps, width = query_proj.shape
    sources = key_proj.shape[1]
    for b in prange(batch):
        for t in range(steps):
            for s in range(sources):
                acc = 0.0
                for a in range(width):
                    acc += v[a] * np.tanh(query_proj[b, t, a] + key_proj[b, s, a])
                scores[b, t, s] = acc


@njit(parallel=True, **_JIT)
def additive_scores_backward(dscores, query_proj, key_proj, v, dquery_proj, dkey_proj, dv_rows):
    """Gradients of :func:`additive_scores` (the tanh is recomputed, not stored).

    dscores (B, T, S), query_proj (B, T, A), key_proj (B, S, A), v (A,); written:
    dquery_proj (B, T, A), dkey_proj (B, S, A), dv_rows (B, A) (row b's part of dL/dv)."""
    batch, steps, width = query_proj.shape
    sources = key_proj.shape[1]
    for b in prange(batch):
        dkey_proj[b] = 0.0
        dv_rows[b] = 0.0
        for t in range(steps):
            for a in range(width):
                dquery_proj[b, t, a] = 0.0
            for s in range(sources):
                g = dscores[b, t, s]
                for a in range(width):
                    u = np.tanh(query_proj[b, t, a] + key_proj[b, s, a])
                    dv_rows[b, a] += g * u
                    du = g * v[a] * (1.0 - u * u)
                    dquery_proj[b, t, a] += du
                    dkey_proj[b, s, a] += du


@njit(parallel=True, **_JIT)
def softmax_context(scores, lengths, values, probs, context):
    """Softmax of each row's scores over its ``lengths[b]`` valid source steps (the others
    get probability 0) and the context ``context[b, t] = probs[b, t] @ values[b]``.

    scores (B, T, S), lengths (B,) in 1..S, values (B, S, E); written: probs (B, T, S),
    context (B, T, E)."""
    batch, steps, sources = scores.shape
    width = values.shape[2]
    for b in prange(batch):
        n = lengths[b]
        for t in range(steps):
            top = scores[b, t, 0]
            for s in range(1, n):
                top = max(top, scores[b, t, s])
            total = 0.0
            for s in range(n):
                e = np.exp(scores[b, t, s] - top)
                probs[b, t, s] = e
                total += e
            for s in range(n):
                probs[b, t, s] /= total
            for s in range(n, sources):
                probs[b, t, s] = 0.0
            for e_ in range(width):
                context[b, t, e_] = 0.0
            for s in range(n):
                p = probs[b, t, s]
                for e_ in range(width):
                    context[b, t, e_] += p * values[b, s, e_]


@njit(parallel=True, **_JIT)
def softmax_context_backward(dcontext, probs, values, dvalues, dscores):
    """Gradients of :func:`softmax_context`: ``dvalues += probs^T @ dcontext``
    (accumulated) and ``dscores = probs * (dprobs - sum(probs * dprobs))`` (written), with
    ``dprobs = dcontext @ values^T``; masked steps get zero.

    dcontext (B, T, E), probs (B, T, S), values (B, S, E), dvalues (B, S, E), dscores (B, T, S)."""
    batch, steps, sources = probs.shape
    width = values.shape[2]
    for b in prange(batch):
        for t in range(steps):
            weighted = 0.0
            for s in range(sources):
                p = probs[b, t, s]
                acc = 0.0
                for e_ in range(width):
                    acc += dcontext[b, t, e_] * values[b, s, e_]
                    dvalues[b, s, e_] += p * dcontext[b, t, e_]
                dscores[b, t, s] = acc
                weighted += p * acc
            for s in range(sources):
                dscores[b, t, s] = probs[b, t, s] * (dscores[b, t, s] - weighted)
