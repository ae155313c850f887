"""Run one direction of one layer: the hoisted GEMMs in NumPy, the time loops in the
generated kernels.

Forward: ``gx = x @ W_ih^T + b_ih`` for all steps in one GEMM (BLAS may use every core),
then the compiled time loop (BLAS held to one thread, Numba owns the cores).
Backward: the compiled reverse time loop, then ``dW_ih``, ``dW_hh``, the biases and ``dx``
each as one GEMM or reduction over the whole tape.

Holding BLAS to one thread inside the kernels avoids the oversubscription trap measured in
DESIGN.md section 3 (a 2-thread BLAS called at every step from Numba threads: 20x slower).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numba
import numpy as np

from lstm_numba.kernels import gemm


@functools.cache
def _threadpool_controller():
    # A controller sees only the libraries loaded when it is made: load SciPy's BLAS (the
    # one Numba's np.dot calls) first.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def blas_single_thread():
    """Hold every BLAS pool (NumPy's and SciPy's OpenBLAS) to one thread."""
    with _threadpool_controller().limit(limits=1, user_api="blas"):
        yield


#: Per-part recurrent GEMM work (flops per step) from which an elementwise gate's hidden
#: units are split across threads. Below it a per-step barrier costs more than the larger
#: GEMMs save (measured: small T=50 B=32 H=64 ran 1.9x slower split; medium B=64 H=256
#: ran its GEMMs 1.4x faster).
HIDDEN_SPLIT_MIN_FLOPS = 4_000_000
#: Fewest hidden units per part (narrower parts waste the vector width).
HIDDEN_SPLIT_MIN_UNITS = 16


@dataclass(frozen=True)
class Tiling:
    """How the time loops split one step: ``parts`` hidden parts times ``chunks`` row chunks.

    A function of the shapes and the machine's core count only (never of
    ``NUMBA_NUM_THREADS``), so results are bitwise identical whatever the thread count.
    """

    parts: int
    chunks: int
    block_rows: int


def tiling(elementwise: bool, batch: int, hidden: int, n_gates: int) -> Tiling:
    """Choose the tiling for a gate and a shape.

    Elementwise gates split the hidden units into up to one part per core: a power of two
    dividing H, each part at least ``HIDDEN_SPLIT_MIN_UNITS`` wide with at least
    ``HIDDEN_SPLIT_MIN_FLOPS`` of recurrent GEMM per step, over the whole batch in
    blocks of up to 256 rows. Otherwise the batch is split into row blocks of about half
    the batch (a multiple of 8, at most 64), each chunk running all steps without a barrier
    (the number of chunks follows the thread count; the blocks, and so the results, do not).
    """
    parts = 1
    if elementwise:
        while (parts * 2 <= numba.config.NUMBA_DEFAULT_NUM_THREADS and hidden % (parts * 2) == 0
               and hidden // (parts * 2) >= HIDDEN_SPLIT_MIN_UNITS
               and 2 * batch * hidden * n_gates // (parts * 2) >= HIDDEN_SPLIT_MIN_FLOPS):
            parts *= 2
    if parts > 1:
        block_rows = min(batch, 256)
    else:
        half = -(-batch // 2)
        block_rows = min(64, max(8, -(-half // 8) * 8))
    n_blocks = -(-batch // block_rows)
    chunks = n_blocks if parts > 1 else max(1, min(n_blocks, numba.get_num_threads()))
    return Tiling(parts, chunks, block_rows)


def part_major(n_blocks: int, hidden: int, parts: int) -> np.ndarray:
    """Index that reorders a vector of ``n_blocks`` blocks of ``hidden`` into part-major order.

    ``v[index]`` lists, for each of ``parts`` equal slices of the hidden units, that
    slice of every block (see :mod:`lstm_numba.kernels.template`).
    """
    return np.arange(n_blocks * hidden).reshape(n_blocks, parts, hidden // parts).transpose(1, 0, 2).ravel()


@dataclass
class DirectionWeights:
    """One direction's parameters in the kernels' part-major layout.

    w_ih      (G, I)        rows part-major
    b_ih      (G,)          part-major
    w_hh      (G, H)        rows part-major
    w_hh_t    (U, H, G/U)   W_hh^T, one contiguous column part per hidden part
    b_hh      (G,)          part-major
    extra     (P,)          part-major
    """

    tiling: Tiling
    w_ih: np.ndarray
    b_ih: np.ndarray
    w_hh: np.ndarray
    w_hh_t: np.ndarray
    b_hh: np.ndarray
    extra: np.ndarray

    @classmethod
    def prepare(cls, tiling: Tiling, w_ih, w_hh, b_ih, b_hh, extra) -> "DirectionWeights":
        n_gates, hidden = w_hh.shape
        parts = tiling.parts
        if parts > 1:
            gates = part_major(n_gates // hidden, hidden, parts)
            w_ih, b_ih, w_hh, b_hh = w_ih[gates], b_ih[gates], w_hh[gates], b_hh[gates]
            extra = extra[part_major(extra.size // hidden, hidden, parts)]
        w_hh_t = np.ascontiguousarray(w_hh.reshape(parts, n_gates // parts, hidden).transpose(0, 2, 1))
        return cls(tiling, np.ascontiguousarray(w_ih), b_ih, w_hh, w_hh_t, b_hh, extra)

    def hidden_parts_of_w_hh(self) -> np.ndarray:
        """W_hh as (U, G, W): rows part-major, one contiguous column part per hidden part."""
        n_gates, hidden = self.w_hh.shape
        parts = self.tiling.parts
        return np.ascontiguousarray(self.w_hh.reshape(n_gates, parts, hidden // parts).transpose(1, 0, 2))

    def to_natural(self, array: np.ndarray, axis: int = 0) -> np.ndarray:
        """Undo the part-major order of ``array`` (blocks of H along ``axis``)."""
        hidden = self.w_hh.shape[1]
        if self.tiling.parts == 1 or array.shape[axis] == 0:
            return array
        index = part_major(array.shape[axis] // hidden, hidden, self.tiling.parts)
        out = np.empty_like(array)
        out[(slice(None),) * axis + (index,)] = array
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
        return np.ascontiguousarray(state.reshape(batch, parts, n_state, width).transpose(2, 0, 1, 3)
                                    .reshape(n_state, batch, parts * width))


class Workspace:
    """Large scratch and tape arrays of one direction of one layer, kept between calls.

    Fresh arrays of this size come from ``mmap`` and page-fault on first touch, which
    measured several times the cost of the kernels writing them (large config). Arrays
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
            kept = self._arrays[role] = np.empty(shape, dtype=dtype)
        return kept[:shape[0]]


@dataclass
class DirectionTape:
    """What backward needs from one direction of one layer.

    x        (T, B, I)       the layer input
    gx       (T, B, G)       input projections, by time index, part-major
    states   (T + 1, B, S*H) states before each step, by step index, part-major
    h        (T + 1, B, H)   h before each step, by step index
    gh       (T, U, B, G/U)  recurrent projections, by step index
    lengths  (B,)
    reverse  bool
    weights  the parameters forward ran with, in the kernels' layout
    """

    x: np.ndarray
    gx: np.ndarray
    states: np.ndarray
    h: np.ndarray
    gh: np.ndarray
    lengths: np.ndarray
    reverse: bool
    weights: DirectionWeights


@dataclass
class DirectionGrads:
    """Gradients of one direction: ``params`` by role, ``x`` and the initial state."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray
    extra: np.ndarray
    x: np.ndarray
    state: np.ndarray


def forward_direction(kernels, elementwise, workspace, x, w_ih, w_hh, b_ih, b_hh, extra, clip, lengths, reverse,
                      state0, keep_tape):
    """Run one direction over ``x`` (T, B, I) from ``state0`` (S, B, H).

    ``elementwise`` says whether the gate allows splitting the hidden units (see
    :func:`tiling`); the tape's arrays come from ``workspace``. Returns ``y`` (T, B, H), the final state (S, B, H) and a
    :class:`DirectionTape` (or None when ``keep_tape`` is false).
    """
    steps, batch, _ = x.shape
    n_gates, hidden = w_hh.shape
    dtype = x.dtype
    weights = DirectionWeights.prepare(tiling(elementwise, batch, hidden, n_gates), w_ih, w_hh, b_ih, b_hh, extra)
    tile = weights.tiling
    n_state = state0.shape[0]
    n_slots = steps + 1 if keep_tape else 2
    gx = workspace.array("gx", (steps, batch, n_gates), dtype)
    states = workspace.array("states", (n_slots, batch, n_state * hidden), dtype)
    states[0] = weights.state_to_kernel(state0)
    h = workspace.array("h", (n_slots, batch, hidden), dtype)
    h[0] = state0[0]
    gh = workspace.array("gh", (steps if keep_tape else 1, tile.parts, batch, n_gates // tile.parts), dtype)
    y = np.empty((steps, batch, hidden), dtype=dtype)
    with blas_single_thread():
        gemm.input_projection(x.reshape(steps * batch, -1), weights.w_ih, weights.b_ih,
                              gx.reshape(steps * batch, n_gates), gemm.gemm_block_rows(steps * batch))
        kernels.forward_sequence(gx, weights.w_hh_t, weights.b_hh, weights.extra, dtype.type(clip), lengths,
                                 reverse, tile.chunks, tile.block_rows, states, h, gh, y)
    final = weights.state_from_kernel(states[steps % n_slots], n_state)
    tape = DirectionTape(x, gx, states, h, gh, lengths, reverse, weights) if keep_tape else None
    return y, final, tape


def backward_direction(kernels, workspace, tape: DirectionTape, clip, dy, dstate) -> DirectionGrads:
    """Backpropagate ``dy`` (T, B, H) and ``dstate`` (S, B, H) through one direction."""
    steps, batch, n_gates = tape.gx.shape
    rows = steps * batch
    dtype = tape.gx.dtype
    weights = tape.weights
    tile = weights.tiling
    n_state, _, hidden = dstate.shape
    ds = np.ascontiguousarray(weights.state_to_kernel(dstate), dtype=dtype)
    dgx = workspace.array("dgx", tape.gx.shape, dtype)
    dgh = workspace.array("dgh", tape.gx.shape, dtype)
    dp_rows = np.zeros((batch, weights.extra.size), dtype=dtype)
    db_rows = np.zeros((2, batch, n_gates), dtype=dtype)
    w_ih_grad, w_hh_grad = np.empty_like(weights.w_ih), np.empty_like(weights.w_hh)
    x_grad = np.empty_like(tape.x)
    with blas_single_thread():
        kernels.backward_sequence(tape.gx, weights.hidden_parts_of_w_hh(), weights.extra, dtype.type(clip),
                                  tape.lengths, tape.reverse, tile.chunks, tile.block_rows, tape.states, tape.gh,
                                  np.ascontiguousarray(dy), ds, dgx, dgh, dp_rows, db_rows)
        dgx2 = dgx.reshape(rows, n_gates)
        slabs = gemm.reduction_parts(rows), n_gates
        gemm.weight_gradients(dgx2, tape.x.reshape(rows, -1), w_ih_grad,
                              workspace.array("slabs_ih", slabs + (w_ih_grad.shape[1],), dtype))
        gemm.weight_gradients(dgh.reshape(rows, n_gates), tape.h[:steps].reshape(rows, -1), w_hh_grad,
                              workspace.array("slabs_hh", slabs + (hidden,), dtype))
        gemm.input_gradient(dgx2, weights.w_ih, x_grad.reshape(rows, -1), gemm.gemm_block_rows(rows))
    b_ih_grad, b_hh_grad = db_rows.sum(axis=1)
    return DirectionGrads(
        w_ih=weights.to_natural(w_ih_grad), w_hh=weights.to_natural(w_hh_grad),
        b_ih=weights.to_natural(b_ih_grad), b_hh=weights.to_natural(b_hh_grad),
        extra=weights.to_natural(dp_rows.sum(axis=0)), x=x_grad,
        state=weights.state_from_kernel(ds, n_state),
    )
