"""The kernels' memory: the part-major weight layout of one direction, cache-line aligned
arrays, and the workspace that keeps tape and scratch arrays between calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lstm_numba.engine.kernels import arrays, microkernel
from lstm_numba.engine.tiling import Tiling


def part_major(n_blocks: int, hidden: int, parts: int) -> np.ndarray:
    """Index that reorders a vector of ``n_blocks`` blocks of ``hidden`` into part-major order.

    ``v[index]`` lists, for each of ``parts`` equal slices of the hidden units, that
    slice of every block (see :mod:`lstm_numba.engine.kernels.template`).
    """
    return np.arange(n_blocks * hidden).reshape(n_blocks, parts, hidden // parts).transpose(1, 0, 2).ravel()


@dataclass
class DirectionWeights:
    """One direction's parameters in the kernels' part-major layout.

    hidden    H, the gate's units (the blocks of G)
    w_ih      (G, I)        rows part-major, on a cache line (the caller's array, with one part,
                            when it is on one already)
    w_proj    (I + 1, G)    the hoisted input projection [W_ih^T; bias], columns part-major;
                            the bias is b_ih, or b_ih + b_hh for an additive gate (whose
                            recurrent GEMM accumulates into the projection). None when the
                            tiling fuses the projection into the step.
    w_hh      (G, R)        PyTorch's row order (the caller's array); R = H; None for a gate
                            without recurrent weights (``Gate.recurrent`` false)
    w_rec     (U, K, G/U)   the forward step's GEMM weights, one contiguous column part per
                            hidden part, on a cache line: W_hh^T (K = R), or, fused,
                            [W_ih^T; b_ih + b_hh; W_hh^T] (K = I + 1 + R); K = 0 without
                            recurrent weights
    b_hh      (G,)          part-major
    extra     (P,)          part-major
    w_hr      (R, H)        a projected layer's W_hr (R = proj_size; the caller's array), or None
    w_hr_t    (H, R)        W_hr^T on a cache line, or None
    w_packed  (U, P, K, PANEL)  ``w_rec`` in the microkernel's panels where the tiling runs
                            the forward step on it, else (U, 0, 0, PANEL)
    """

    tiling: Tiling
    hidden: int
    w_ih: np.ndarray
    w_proj: np.ndarray | None
    w_hh: np.ndarray | None
    w_rec: np.ndarray
    b_hh: np.ndarray
    extra: np.ndarray
    w_hr: np.ndarray | None = None
    w_hr_t: np.ndarray | None = None
    w_packed: np.ndarray | None = None

    @classmethod
    def prepare(cls, tiling: Tiling, hidden: int, w_ih, w_hh, b_ih, b_hh, extra, additive: bool,
                w_hr=None) -> "DirectionWeights":
        n_gates, inputs = w_ih.shape
        rec_width = 0 if w_hh is None else w_hh.shape[1]
        parts = tiling.parts
        n_blocks, width = n_gates // hidden, hidden // parts
        # W_ih's rows part-major on a cache line: it is the input gradient's weights, which
        # the small-matrix kernel reads unpacked
        w_ih_parts = np.ascontiguousarray(w_ih).reshape(n_blocks, parts, width, inputs)
        if parts > 1 or not is_aligned(w_ih):
            w_ih = aligned_copy(w_ih_parts.swapaxes(0, 1)).reshape(n_gates, inputs)
        if parts > 1:
            gates = part_major(n_blocks, hidden, parts)
            b_ih, b_hh = b_ih[gates], b_hh[gates]
            extra = extra[part_major(extra.size // hidden, hidden, parts)]
        bias = b_ih + b_hh if additive else b_ih
        if tiling.fused_input:
            w_proj = None
            w_rec = aligned_empty((parts, inputs + 1 + rec_width, n_gates // parts), w_ih.dtype)
            arrays.transpose_parts(w_ih_parts, _split_last(w_rec[:, :inputs], n_blocks))
            w_rec[:, inputs] = bias.reshape(parts, -1)
            rec_rows = w_rec[:, inputs + 1:]
        else:
            w_proj = aligned_empty((inputs + 1, n_gates), w_ih.dtype)
            w_proj_parts = _split_last(w_proj[:-1].reshape(inputs, parts, n_gates // parts), n_blocks)
            arrays.transpose_parts(w_ih_parts, w_proj_parts.swapaxes(0, 1))
            w_proj[-1] = bias
            w_rec = rec_rows = aligned_empty((parts, rec_width, n_gates // parts), w_ih.dtype)
        if w_hh is not None:
            w_hh_parts = np.ascontiguousarray(w_hh).reshape(n_blocks, parts, width, rec_width)
            arrays.transpose_parts(w_hh_parts, _split_last(rec_rows, n_blocks))
        w_hr_t = None if w_hr is None else aligned_copy(np.asarray(w_hr).T)
        w_packed = microkernel.pack_panels(w_rec) if tiling.forward_micro else microkernel.no_panels(parts, w_rec.dtype)
        return cls(tiling, hidden, w_ih, w_proj, w_hh, w_rec, b_hh, extra, w_hr, w_hr_t, w_packed)

    def hidden_parts_of_w_hh(self) -> np.ndarray:
        """W_hh as (U, G, W): rows part-major, one contiguous column part per hidden part
        (with one part, W_hh itself when it is on a cache line); (U, 0, W) without
        recurrent weights."""
        hidden, parts = self.hidden, self.tiling.parts
        if self.w_hh is None:
            return np.zeros((parts, 0, hidden // parts), self.w_ih.dtype)
        if parts == 1:  # (G, R): R = H, or proj_size for a projected layer
            return (self.w_hh if is_aligned(self.w_hh) else aligned_copy(self.w_hh))[None]
        n_gates = self.w_hh.shape[0]
        n_blocks, width = n_gates // hidden, hidden // parts
        out = aligned_empty((parts, n_gates, width), self.w_hh.dtype)
        # out[u, (v, b, j), k] = W_hh[(b, v, j), (u, k)]: rows of W units at a time
        out.reshape(parts, parts, n_blocks, width, width)[...] = (
            self.w_hh.reshape(n_blocks, parts, width, parts, width).transpose(3, 1, 0, 2, 4))
        return out

    def packed_hidden_parts_of_w_hh(self, hidden_parts: np.ndarray) -> np.ndarray:
        """``hidden_parts`` (:meth:`hidden_parts_of_w_hh`, (U, G, W)) in the microkernel's
        panels, (U, P, G, PANEL), where the tiling runs the backward step on it, else
        (U, 0, 0, PANEL)."""
        if not self.tiling.backward_micro:
            return microkernel.no_panels(self.tiling.parts, self.w_ih.dtype)
        return microkernel.pack_panels(hidden_parts)

    def natural_rows(self) -> np.ndarray:
        """(G,) int64: the natural (PyTorch) index of each part-major gate."""
        return part_major(self.w_ih.shape[0] // self.hidden, self.hidden, self.tiling.parts)

    def to_natural(self, array: np.ndarray) -> np.ndarray:
        """Undo the part-major order of ``array``'s rows (blocks of H), as a C-contiguous array."""
        hidden = self.hidden
        if self.tiling.parts == 1 or len(array) == 0:
            return np.ascontiguousarray(array)
        out = np.empty(array.shape, array.dtype)
        out[part_major(len(array) // hidden, hidden, self.tiling.parts)] = array
        return out

    def state_to_kernel(self, state: np.ndarray) -> np.ndarray:
        """(S, B, H) -> (B, S*H) part-major."""
        n_state, batch, hidden = state.shape
        parts = self.tiling.parts
        return state.reshape(n_state, batch, parts, hidden // parts).transpose(1, 2, 0, 3).reshape(batch, -1)

    def state_from_kernel(self, state: np.ndarray, n_state: int) -> np.ndarray:
        """(B, S*H) part-major -> (S, B, H), a new array."""
        batch = state.shape[0]
        parts = self.tiling.parts
        width = state.shape[1] // (n_state * parts)
        return state.reshape(batch, parts, n_state, width).transpose(2, 0, 1, 3).reshape(n_state, batch, -1).copy()


class WeightCache:
    """One direction's :class:`DirectionWeights`, kept while its parameters keep their values.

    For ``LSTM.step``, whose calls are a step or a few each: the re-layout (two parallel
    transposes and their arrays) would otherwise be a large part of every call. Each call
    compares the parameters with a copy taken when they were laid out (one pass over them,
    on one thread), so a parameter changed in place, by an optimiser say, is laid out
    afresh.
    """

    def __init__(self):
        self._weights = None
        self._snapshot = ()

    def get(self, tiling: Tiling, hidden: int, params: tuple, additive: bool) -> DirectionWeights:
        """The weights for ``params`` = (w_ih, w_hh, b_ih, b_hh, extra, w_hr), contiguous
        arrays (``w_hh`` None without recurrent weights, ``w_hr`` None without a projection)."""
        present = tuple(p for p in params if p is not None)
        kept = self._weights
        if (kept is None or kept.tiling != tiling or len(present) != len(self._snapshot)
                or not all(arrays.same_values(a.reshape(-1), b.reshape(-1)) for a, b in zip(present, self._snapshot))):
            self._weights = kept = DirectionWeights.prepare(tiling, hidden, *params[:5], additive, *params[5:])
            self._snapshot = tuple(np.array(a, copy=True) for a in present)
        return kept


#: Byte alignment of every array the time loops write: a cache line, so that hidden parts
#: (each a multiple of 16 floats wide in practice) never share a line between threads.
#: NumPy's own arrays sit 16 bytes past a line, which measured 1-3 ms of false sharing per
#: medium backward pass.
ALIGNMENT = 64


def aligned_empty(shape: tuple, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a cache line."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buffer = np.empty(size * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    offset = -buffer.ctypes.data % ALIGNMENT
    return buffer[offset:offset + size * dtype.itemsize].view(dtype).reshape(shape)


def _split_last(array: np.ndarray, n_blocks: int) -> np.ndarray:
    """A view of ``array`` (..., n_blocks * W) as (..., n_blocks, W), never a copy."""
    view = array.view()
    view.shape = (*array.shape[:-1], n_blocks, array.shape[-1] // n_blocks)  # raises rather than copy
    return view


def is_aligned(array: np.ndarray) -> bool:
    """Whether ``array`` is C-contiguous and starts on a cache line."""
    return array.flags.c_contiguous and array.ctypes.data % ALIGNMENT == 0


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` starting on a cache line.

    For weights the small-matrix GEMM kernel reads unpacked: ``W_ih``, the input
    gradient's, measured 3.7 against 4.7 ms at medium aligned (the recurrent weights are
    written into aligned arrays by ``kernels.arrays.transpose_parts``: 68 against 84 us
    per medium step).
    """
    copy = aligned_empty(array.shape, array.dtype)
    copy[...] = array
    return copy


class Workspace:
    """Scratch and tape arrays of one direction of one layer, kept between calls.

    Fresh arrays of the tape's size come from ``mmap`` and page-fault on first touch, which
    measured several times the cost of the kernels writing them (large config); the small
    scratch arrays are kept too, which saves about 2 us of allocation each per call. Arrays
    are reused by role; a kept array with more leading rows than asked for serves as a view
    (a training tape's T + 1 state slots hold inference's 2). A forward therefore
    overwrites the previous forward's tape, which backward only ever reads for the last
    forward.
    """

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, role: str, shape: tuple, dtype) -> np.ndarray:
        """An uninitialised array of ``shape`` for ``role``, reusing the kept one if it fits."""
        kept = self._arrays.get(role)
        if kept is None or kept.dtype != dtype or kept.shape[1:] != shape[1:] or kept.shape[0] < shape[0]:
            kept = self._arrays[role] = aligned_empty(shape, dtype)
        return kept[:shape[0]]
