"""Dense (linear) and embedding layers in NumPy, with explicit forward and backward.

They complete the recurrent layers into models (:mod:`lstm_numba.nn.models`). Initialisation
and parameter layout follow ``torch.nn.Linear`` and ``torch.nn.Embedding``, so weights copy
across unchanged:

- ``Dense``: ``weight`` ``(out, in)`` and ``bias`` ``(out,)``, both uniform in
  ``[-1/sqrt(in), 1/sqrt(in)]`` (what ``kaiming_uniform_(a=sqrt(5))`` works out to);
  ``y = x @ weight.T + bias`` over the last axis of ``x``.
- ``Embedding``: ``weight`` ``(num_embeddings, dim)`` drawn from N(0, 1);
  ``y = weight[ids]``.

Each layer keeps what its backward needs from the last forward; ``backward`` returns the
parameter gradients as a dict (same keys as ``params``) and the input gradient.

The head's GEMMs are small; they run with BLAS held to one thread, which measured 2-10x
faster than OpenBLAS's two threads here (and far faster when other processes share the
cores, where a two-thread GEMM waits for a descheduled thread).
"""

from __future__ import annotations

import math

import numpy as np

from lstm_numba.engine.blas_control import blas_single_thread
from lstm_numba.nn.memory import check_fits
from lstm_numba.nn.parameters import check_live
from lstm_numba.nn.validation import positive_int, resolve_dtype

__all__ = ["Dense", "Embedding"]


class Dense:
    """``y = x @ weight.T + bias`` over the last axis; ``x`` may have any leading shape."""

    def __init__(self, in_features: int, out_features: int, dtype, rng: np.random.Generator,
                 bias: bool = True):
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        self.dtype = resolve_dtype(dtype)
        elements = self.out_features * (self.in_features + 1)
        check_fits(f"Dense(in_features={self.in_features}, out_features={self.out_features}): the parameters",
                   elements * (8 + self.dtype.itemsize))
        bound = 1.0 / math.sqrt(self.in_features)
        self.params = {"weight": rng.uniform(-bound, bound, (self.out_features, self.in_features))
                       .astype(self.dtype)}
        if bias:
            self.params["bias"] = rng.uniform(-bound, bound, self.out_features).astype(self.dtype)
        self._x = None

    def forward(self, x: np.ndarray, need_grad: bool = True) -> np.ndarray:
        """``x`` ``(..., in)`` -> ``(..., out)``."""
        check_live(self.params, "weight", (self.out_features, self.in_features), self.dtype)
        if "bias" in self.params:
            check_live(self.params, "bias", (self.out_features,), self.dtype)
        x2 = np.ascontiguousarray(x).reshape(-1, self.in_features)  # 2-D, so BLAS does it
        with blas_single_thread():
            y = x2 @ self.params["weight"].T
        if "bias" in self.params:
            y += self.params["bias"]
        self._x = x2 if need_grad else None
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dy: np.ndarray) -> tuple[dict, np.ndarray]:
        """Gradients ``({"weight", "bias"}, dx)`` of the last forward, given ``dL/dy``."""
        if self._x is None:
            raise RuntimeError("Dense.backward() needs a forward() with need_grad=True first")
        x2 = self._x
        dy2 = np.ascontiguousarray(dy).reshape(-1, self.out_features)
        with blas_single_thread():
            grads = {"weight": dy2.T @ x2}
            dx = dy2 @ self.params["weight"]
        if "bias" in self.params:
            grads["bias"] = dy2.sum(axis=0)
        return grads, dx.reshape(dy.shape[:-1] + (self.in_features,))


class Embedding:
    """A lookup table: integer ids ``(...)`` -> vectors ``(..., dim)``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype, rng: np.random.Generator):
        self.num_embeddings = positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.dtype = resolve_dtype(dtype)
        check_fits(f"Embedding(num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}): "
                   "the parameters", self.num_embeddings * self.embedding_dim * (8 + self.dtype.itemsize))
        self.params = {"weight": rng.standard_normal((self.num_embeddings, self.embedding_dim))
                       .astype(self.dtype)}
        self._ids = None

    def forward(self, ids: np.ndarray, need_grad: bool = True) -> np.ndarray:
        """Integer ``ids`` ``(...)`` in ``[0, num_embeddings)`` -> ``(..., dim)``."""
        check_live(self.params, "weight", (self.num_embeddings, self.embedding_dim), self.dtype)
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids: expected integer character ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"ids: expected values in [0, {self.num_embeddings}), got "
                             f"[{ids.min()}, {ids.max()}]")
        self._ids = ids if need_grad else None
        return self.params["weight"][ids]

    def backward(self, dy: np.ndarray) -> dict:
        """``{"weight": dL/dweight}``: rows of ``dy`` summed into the rows they looked up."""
        if self._ids is None:
            raise RuntimeError("Embedding.backward() needs a forward() with need_grad=True first")
        dw = np.zeros_like(self.params["weight"])
        np.add.at(dw, self._ids.ravel(), dy.reshape(-1, self.embedding_dim))
        return {"weight": dw}
