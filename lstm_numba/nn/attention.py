"""Attention of decoder states over encoder outputs, with explicit forward and backward.

Three scores (``kind``), each followed by a softmax over a row's valid source steps and a
weighted sum of the encoder outputs (the context):

- ``"dot"`` (Luong): ``score(h, e) = h . e``; the decoder's width must equal the encoder's.
- ``"general"`` (Luong): ``score(h, e) = (W h) . e``; ``weight`` ``(E, H)``.
- ``"additive"`` (Bahdanau): ``score(h, e) = v . tanh(W_q h + W_k e)``; ``query.weight``
  ``(A, H)``, ``key.weight`` ``(A, E)``, ``v`` ``(A,)``.

The scores, the softmax, the context and all their gradients run in the compiled kernels
of :mod:`lstm_numba.engine.kernels.attention` (parallel over the batch); the projections
are GEMMs over all rows at once.
"""

from __future__ import annotations

import math

import numpy as np

from lstm_numba.engine.kernels import attention as K
from lstm_numba.nn.heads import Dense
from lstm_numba.nn.validation import positive_int, resolve_dtype

ATTENTION_KINDS = ("dot", "general", "additive")


class Attention:
    """``forward(query (B, T, H), memory (B, S, E), lengths (B,))`` -> context ``(B, T, E)``."""

    def __init__(self, kind: str, query_size: int, memory_size: int, dtype, rng: np.random.Generator,
                 additive_size: int | None = None):
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTION_KINDS)}, got {kind!r}")
        self.kind = kind
        self.query_size = positive_int("query_size", query_size)
        self.memory_size = positive_int("memory_size", memory_size)
        self.dtype = resolve_dtype(dtype)
        if kind == "dot" and self.query_size != self.memory_size:
            raise ValueError(f"attention 'dot' needs the decoder's width ({self.query_size}) to equal the "
                             f"encoder's output width ({self.memory_size}); use 'general' or 'additive'")
        self.parts = {}
        if kind == "general":
            self.parts[""] = Dense(self.query_size, self.memory_size, self.dtype, rng, bias=False)
        elif kind == "additive":
            width = positive_int("additive_size", additive_size or self.query_size)
            self.parts["query."] = Dense(self.query_size, width, self.dtype, rng, bias=False)
            self.parts["key."] = Dense(self.memory_size, width, self.dtype, rng, bias=False)
            self.v = rng.uniform(-1 / math.sqrt(width), 1 / math.sqrt(width), width).astype(self.dtype)
        self.params = {f"{prefix}{key}": value for prefix, part in self.parts.items()
                       for key, value in part.params.items()}
        if kind == "additive":
            self.params["v"] = self.v
        self._cache = None

    def forward(self, query, memory, lengths, need_grad: bool = True):
        """The context ``(B, T, E)``; ``self.probs`` keeps the weights ``(B, T, S)``."""
        batch, steps, _ = query.shape
        sources = memory.shape[1]
        scores = np.empty((batch, steps, sources), dtype=self.dtype)
        if self.kind == "additive":
            qa = self.parts["query."].forward(query, need_grad)
            ka = self.parts["key."].forward(memory, need_grad)
            K.additive_scores(qa, ka, self.params["v"], scores)
            saved = (qa, ka)
        else:
            q = query if self.kind == "dot" else self.parts[""].forward(query, need_grad)
            q = np.ascontiguousarray(q)
            K.dot_scores(q, memory, scores)
            saved = (q,)
        probs = np.empty_like(scores)
        context = np.empty((batch, steps, self.memory_size), dtype=self.dtype)
        K.softmax_context(scores, lengths.astype(np.int64), memory, probs, context)
        self.probs = probs
        self._cache = (memory, probs, saved) if need_grad else None
        return context

    def backward(self, dcontext):
        """``(grads, dquery, dmemory)`` of the last forward, given ``dL/dcontext``."""
        if self._cache is None:
            raise RuntimeError("Attention.backward() needs a forward() with need_grad=True first")
        memory, probs, saved = self._cache
        dcontext = np.ascontiguousarray(dcontext, dtype=self.dtype)
        dmemory = np.zeros_like(memory)
        dscores = np.empty_like(probs)
        K.softmax_context_backward(dcontext, probs, memory, dmemory, dscores)
        grads = {}
        if self.kind == "additive":
            qa, ka = saved
            dqa, dka = np.empty_like(qa), np.empty_like(ka)
            dv_rows = np.empty((qa.shape[0], qa.shape[2]), dtype=self.dtype)
            K.additive_scores_backward(dscores, qa, ka, self.params["v"], dqa, dka, dv_rows)
            gq, dquery = self.parts["query."].backward(dqa)
            gk, dmem_k = self.parts["key."].backward(dka)
            dmemory += dmem_k
            grads = {"query.weight": gq["weight"], "key.weight": gk["weight"], "v": dv_rows.sum(axis=0)}
        else:
            (q,) = saved
            dq = np.empty_like(q)
            K.dot_scores_backward(dscores, q, memory, dq, dmemory)
            if self.kind == "dot":
                dquery = dq
            else:
                g, dquery = self.parts[""].backward(dq)
                grads = {"weight": g["weight"]}
        return grads, dquery, dmemory
