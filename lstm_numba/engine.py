"""Run one direction of one layer: the hoisted GEMMs (:mod:`lstm_numba.kernels.gemm`) and
the time loops (the generated kernels).

Forward: ``gx = [x, 1] @ [W_ih^T; b]`` for all steps in one parallel set of GEMMs, then
the compiled time loop (or, where :func:`fuses_input_projection` says so, the time loop
alone, its step GEMM reading ``[x_s, 1, h_{s-1}]``). Backward: the compiled reverse time
loop, then the weight and bias gradients as one GEMM over the tape's ``[x, 1, h]`` rows
(two for a gate that is not additive) and ``dx`` as another. BLAS is held to one thread
throughout: Numba owns the cores.

Holding BLAS to one thread inside the kernels avoids the oversubscription trap measured in
DESIGN.md section 3 (a 2-thread BLAS called at every step from Numba threads: 20x slower).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass

import numba
import numpy as np

from lstm_numba.kernels import arrays, blas, gemm


@functools.cache
def _threadpool_controller():
    # A controller sees only the libraries loaded when it is made: load SciPy's BLAS (the
    # one Numba's np.dot calls) first.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.cache
def small_kernel_available() -> bool:
    """Whether every OpenBLAS loaded runs a core with the small-matrix GEMM kernel.

    See :mod:`lstm_numba.kernels.blas`. ``OPENBLAS_CORETYPE`` decides the core, so the
    answer is fixed for a process.
    """
    cores = {str(info.get("architecture", "")).lower() for info in _threadpool_controller().info()
             if info.get("internal_api") == "openblas"}
    return bool(cores) and cores <= blas.SMALL_KERNEL_CORES


@functools.cache
def _blas_pools() -> tuple:
    return tuple(_threadpool_controller().select(user_api="blas").lib_controllers)


@contextlib.contextmanager
def blas_single_thread():
    """Hold every BLAS pool (NumPy's and SciPy's OpenBLAS) to one thread.

    Talks to the pools threadpoolctl found directly: its ``limit()`` re-reads every
    library's info on each use, which measured 10 us per call, a few percent of a small
    layer's forward.
    """
    pools = _blas_pools()
    previous = [pool.num_threads for pool in pools]
    for pool in pools:
        pool.set_num_threads(1)
    try:
        yield
    finally:
        for pool, threads in zip(pools, previous):
            pool.set_num_threads(threads)


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

    ``forward_blocks`` and ``backward_blocks`` are the (rows, columns, depth) blocks of
    each loop's recurrent GEMM (:func:`lstm_numba.kernels.blas.gemm_blocks`, or
    :func:`fused_step_blocks`). ``fused_input``: the forward loop's GEMM reads whole tape
    rows [x_s, 1, h_{s-1}], so the input projection runs inside the step instead of as a
    hoisted GEMM before the loop. A function of the shapes, the machine's core count and
    its BLAS core only (never of ``NUMBA_NUM_THREADS``), so results are bitwise identical
    whatever the thread count.
    """

    parts: int
    chunks: int
    forward_blocks: tuple
    backward_blocks: tuple
    fused_input: bool = False


def tiling(elementwise: bool, additive: bool, batch: int, inputs: int, hidden: int, n_gates: int,
           itemsize: int) -> Tiling:
    """Choose the tiling for a gate and a shape.

    Elementwise gates split the hidden units into up to one part per core: a power of two
    dividing H, each part at least ``HIDDEN_SPLIT_MIN_UNITS`` wide with at least
    ``HIDDEN_SPLIT_MIN_FLOPS`` of recurrent GEMM per step, over the whole batch in
    blocks of up to 256 rows. Otherwise the batch is split into row blocks of about half
    the batch (a multiple of 8, at most 64), each chunk running all steps without a barrier
    (the number of chunks follows the thread count; the blocks, and so the results, do not).

    An additive gate's input projection is fused into the forward step (see
    :func:`fuses_input_projection`) when the fused GEMM runs on OpenBLAS's small-matrix
    kernel.
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
    width, part_gates = hidden // parts, n_gates // parts
    small = small_kernel_available()
    fused = additive and fuses_input_projection(block_rows, part_gates, inputs + 1 + hidden, itemsize, small)
    if fused:
        forward_blocks = fused_step_blocks(block_rows, part_gates, inputs + 1 + hidden, itemsize, small)
    else:
        forward_blocks = (block_rows, *blas.gemm_blocks(block_rows, part_gates, hidden, itemsize, small))
    backward_blocks = (block_rows, *blas.gemm_blocks(block_rows, width, n_gates, itemsize, small))
    return Tiling(parts, chunks, forward_blocks, backward_blocks, fused)


def fuses_input_projection(rows: int, part_gates: int, depth: int, itemsize: int, small_kernel: bool) -> bool:
    """Whether the forward step's GEMM ``rows x depth @ depth x part_gates`` over whole tape
    rows (depth I + 1 + H) runs on OpenBLAS's small-matrix kernel in ``blas.gemm_blocks``'
    blocks; the input projection then runs inside the step.

    The hoisted projection runs at packed-GEMM speed but writes every step's ``gx``, which
    the loop reads back (and, in training, writes again). Measured, 2 threads, SkylakeX
    kernels, projection plus the loop's GEMMs: medium (B=64, I=128, H=256, 2 hidden parts:
    blocks of 64 x 32 x 385) 12.3 against 13.2 ms; small (B=32, I=32, H=64, 16-row chunks)
    0.177 against 0.188 ms; large (B=128, I=256, H=512: 128-row blocks, no small-matrix path)
    272 against 202 ms, so it is not fused there.
    """
    if not small_kernel:
        return False
    col_block, depth_block = blas.gemm_blocks(rows, part_gates, depth, itemsize, small_kernel)
    return rows * col_block * depth_block <= blas.SMALL_KERNEL_MAX_MNK


#: Fewest rows per block of the fused forward step's GEMM (``fused_step_blocks``).
FUSED_MIN_BLOCK_ROWS = 8


def fused_step_blocks(rows: int, part_gates: int, depth: int, itemsize: int, small_kernel: bool) -> tuple:
    """(rows, columns, depth) blocks of the fused forward step's GEMM over ``rows`` rows.

    ``blas.gemm_blocks``' blocks, except where those split the columns at full depth: then
    blocks twice as wide (``2 * blas.SMALL_GEMM_COLUMNS``) and as many rows (``rows``
    halved, at least ``FUSED_MIN_BLOCK_ROWS``) as fit the small-matrix kernel. Measured in
    the medium benchmark (64 rows, 512 columns per part, depth 385), alternating in one
    process: forward 14.4-16.2 -> 13.6-14.9 ms and forward+backward 44.5-48.3 -> 42.8-47.1
    ms with 32 x 64 blocks against 64 x 32 (16 x 128 did as well; 32 x 32 gained nothing).
    The unfused loops (depth H, or a split depth) were measured best with 32 columns.
    """
    col_block, depth_block = blas.gemm_blocks(rows, part_gates, depth, itemsize, small_kernel)
    if col_block < part_gates and depth_block == depth:
        wide = 2 * blas.SMALL_GEMM_COLUMNS
        short = rows
        while short > FUSED_MIN_BLOCK_ROWS and short * wide * depth > blas.SMALL_KERNEL_MAX_MNK:
            short = -(-short // 2)
        if short * wide * depth <= blas.SMALL_KERNEL_MAX_MNK:
            return short, min(wide, part_gates), depth
    return rows, col_block, depth_block


def part_major(n_blocks: int, hidden: int, parts: int) -> np.ndarray:
    """Index that reorders a vector of ``n_blocks`` blocks of ``hidden`` into part-major order.

    ``v[index]`` lists, for each of ``parts`` equal slices of the hidden units, that
    slice of every block (see :mod:`lstm_numba.kernels.template`).
    """
    return np.arange(n_blocks * hidden).reshape(n_blocks, parts, hidden // parts).transpose(1, 0, 2).ravel()


@dataclass
class DirectionWeights:
    """One direction's parameters in the kernels' part-major layout.

    w_ih      (G, I)        rows part-major, on a cache line (the caller's array, with one part,
                            when it is on one already)
    w_proj    (I + 1, G)    the hoisted input projection [W_ih^T; bias], columns part-major;
                            the bias is b_ih, or b_ih + b_hh for an additive gate (whose
                            recurrent GEMM accumulates into the projection). None when the
                            tiling fuses the projection into the step.
    w_hh      (G, H)        PyTorch's row order (the caller's array)
    w_rec     (U, K, G/U)   the forward step's GEMM weights, one contiguous column part per
                            hidden part, on a cache line: W_hh^T (K = H), or, fused,
                            [W_ih^T; b_ih + b_hh; W_hh^T] (K = I + 1 + H)
    b_hh      (G,)          part-major
    extra     (P,)          part-major
    """

    tiling: Tiling
    w_ih: np.ndarray
    w_proj: np.ndarray | None
    w_hh: np.ndarray
    w_rec: np.ndarray
    b_hh: np.ndarray
    extra: np.ndarray

    @classmethod
    def prepare(cls, tiling: Tiling, w_ih, w_hh, b_ih, b_hh, extra, additive: bool) -> "DirectionWeights":
        n_gates, hidden = w_hh.shape
        inputs = w_ih.shape[1]
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
        w_hh_parts = np.ascontiguousarray(w_hh).reshape(n_blocks, parts, width, hidden)
        if tiling.fused_input:
            w_proj = None
            w_rec = aligned_empty((parts, inputs + 1 + hidden, n_gates // parts), w_ih.dtype)
            arrays.transpose_parts(w_ih_parts, _split_last(w_rec[:, :inputs], n_blocks))
            w_rec[:, inputs] = bias.reshape(parts, -1)
            arrays.transpose_parts(w_hh_parts, _split_last(w_rec[:, inputs + 1:], n_blocks))
        else:
            w_proj = aligned_empty((inputs + 1, n_gates), w_ih.dtype)
            w_proj_parts = _split_last(w_proj[:-1].reshape(inputs, parts, n_gates // parts), n_blocks)
            arrays.transpose_parts(w_ih_parts, w_proj_parts.swapaxes(0, 1))
            w_proj[-1] = bias
            w_rec = aligned_empty((parts, hidden, n_gates // parts), w_ih.dtype)
            arrays.transpose_parts(w_hh_parts, _split_last(w_rec, n_blocks))
        return cls(tiling, w_ih, w_proj, w_hh, w_rec, b_hh, extra)

    def hidden_parts_of_w_hh(self) -> np.ndarray:
        """W_hh as (U, G, W): rows part-major, one contiguous column part per hidden part
        (with one part, W_hh itself when it is on a cache line)."""
        n_gates, hidden = self.w_hh.shape
        parts = self.tiling.parts
        if parts == 1 and is_aligned(self.w_hh):
            return self.w_hh[None]
        n_blocks, width = n_gates // hidden, hidden // parts
        out = aligned_empty((parts, n_gates, width), self.w_hh.dtype)
        # out[u, (v, b, j), k] = W_hh[(b, v, j), (u, k)]: rows of W units at a time
        out.reshape(parts, parts, n_blocks, width, width)[...] = (
            self.w_hh.reshape(n_blocks, parts, width, parts, width).transpose(3, 1, 0, 2, 4))
        return out

    def natural_rows(self) -> np.ndarray:
        """(G,) int64: the natural (PyTorch) index of each part-major gate."""
        n_gates, hidden = self.w_hh.shape
        return part_major(n_gates // hidden, hidden, self.tiling.parts)

    def to_natural(self, array: np.ndarray) -> np.ndarray:
        """Undo the part-major order of ``array``'s rows (blocks of H), as a C-contiguous array."""
        hidden = self.w_hh.shape[1]
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


def reversal_index(lengths: np.ndarray, steps: int) -> np.ndarray:
    """Index (T, B) that reverses each row's valid steps and leaves padded steps in place.

    ``reorder(a, index)`` turns a reverse direction's time order into step order; applied
    again it turns step order back (the reordering is its own inverse).
    """
    step = np.arange(steps)[:, None]
    return np.where(step < lengths[None, :], lengths[None, :] - 1 - step, step)


def reorder(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array`` (T, B, F) with row b's step s taken from step ``index[s, b]``."""
    return np.take_along_axis(array, index[:, :, None], axis=0)


@dataclass
class DirectionTape:
    """What backward needs from one direction of one layer, everything in step order.

    xh       (T + 1, B, I + 1 + H)   rows [x_s, 1, h_{s-1}]: the layer input, a one (for
                                     the bias gradients) and h before each step; row T
                                     holds the final h only. The weight gradients are
                                     then one GEMM over it: dgx^T @ xh gives
                                     [dW_ih, db, dW_hh] for an additive gate.
    gx       (T, B, G)       input projections (plus gh for an additive gate), part-major
    states   (T + 1, B, S*H) states before each step, part-major
    gh       (T_g, U, B, G/U) recurrent projections (T_g = 1, scratch, for an additive gate)
    lengths  (B,)
    order    (T, B) or None  the reversal index of a reverse direction
    weights  the parameters forward ran with, in the kernels' layout
    """

    xh: np.ndarray
    gx: np.ndarray
    states: np.ndarray
    gh: np.ndarray
    lengths: np.ndarray
    order: np.ndarray | None
    weights: DirectionWeights
    additive: bool


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


def forward_direction(kernels, gate, workspace, x, w_ih, w_hh, b_ih, b_hh, extra, clip, lengths, reverse, state0,
                      keep_tape):
    """Run one direction of ``gate`` over ``x`` (T, B, I) from ``state0`` (S, B, H).

    The tape's arrays come from ``workspace``. Returns ``y`` (T, B, H), the final state
    (S, B, H) and a :class:`DirectionTape` (or None when ``keep_tape`` is false).
    """
    steps, batch, inputs = x.shape
    n_gates, hidden = w_hh.shape
    dtype = x.dtype
    tile = tiling(gate.elementwise, gate.additive, batch, inputs, hidden, n_gates, dtype.itemsize)
    weights = DirectionWeights.prepare(tile, w_ih, w_hh, b_ih, b_hh, extra, gate.additive)
    order = reversal_index(lengths, steps) if reverse else None
    n_state = state0.shape[0]
    n_slots = steps + 1 if keep_tape else 2
    xh = workspace.array("xh", (steps + 1, batch, inputs + 1 + hidden), dtype)
    arrays.fill_inputs(np.ascontiguousarray(x), order if reverse else arrays.IN_ORDER, xh)
    xh[0, :, inputs + 1:] = state0[0]
    # A fused projection needs no gx beyond the step at hand unless backward reads it
    gx = workspace.array("gx", (1 if tile.fused_input and not keep_tape else steps, batch, n_gates), dtype)
    states = workspace.array("states", (n_slots, batch, n_state * hidden), dtype)
    states[0] = weights.state_to_kernel(state0)
    gh_steps = steps if keep_tape and not gate.additive else 1
    gh = workspace.array("gh", (gh_steps, tile.parts, batch, n_gates // tile.parts), dtype)
    y = aligned_empty((steps, batch, hidden), dtype)
    with blas_single_thread():
        if not tile.fused_input:
            gemm.input_projection(xh[:steps].reshape(steps * batch, -1)[:, :inputs + 1], weights.w_proj,
                                  gx.reshape(steps * batch, n_gates),
                                  gemm.hoisted_gemm_blocks(steps * batch, n_gates, inputs + 1, dtype.itemsize,
                                                           small_kernel_available()))
        forward_loop = kernels.forward_parts if tile.parts > 1 else kernels.forward_rows
        forward_loop(gx, weights.w_rec, weights.b_hh, weights.extra, dtype.type(clip), lengths, tile.chunks,
                     tile.forward_blocks, states, xh, gh, y)
    final = weights.state_from_kernel(states[steps % n_slots], n_state)
    tape = DirectionTape(xh, gx, states, gh, lengths, order, weights, gate.additive) if keep_tape else None
    return (reorder(y, order) if reverse else y), final, tape


def backward_direction(kernels, workspace, tape: DirectionTape, clip, dy, dstate) -> DirectionGrads:
    """Backpropagate ``dy`` (T, B, H) and ``dstate`` (S, B, H) through one direction."""
    steps, batch, n_gates = tape.gx.shape
    rows = steps * batch
    dtype = tape.gx.dtype
    weights = tape.weights
    tile = weights.tiling
    n_state, _, hidden = dstate.shape
    inputs = weights.w_ih.shape[1]
    dy = np.ascontiguousarray(dy) if tape.order is None else reorder(dy, tape.order)
    ds = workspace.array("ds", (2, batch, n_state * hidden), dtype)  # the state gradients after and before a step
    ds[0] = weights.state_to_kernel(dstate)
    dgx = workspace.array("dgx", tape.gx.shape, dtype)
    dgh = dgx if tape.additive else workspace.array("dgh", tape.gx.shape, dtype)
    dp_rows = workspace.array("dp_rows", (batch, weights.extra.size), dtype)
    dp_rows.fill(0)
    dgh_rows = workspace.array("dgh_rows", (tile.parts * tile.chunks, n_gates // tile.parts), dtype)  # additive dgh
    x_grad = np.empty((steps, batch, inputs), dtype)
    xh2 = tape.xh[:steps].reshape(rows, -1)
    with blas_single_thread():
        backward_loop = kernels.backward_parts if tile.parts > 1 else kernels.backward_rows
        backward_loop(tape.gx, weights.hidden_parts_of_w_hh(), weights.extra, dtype.type(clip), tape.lengths,
                      tile.chunks, tile.backward_blocks, tape.states, tape.gh, dy, ds, dgx, dgh, dp_rows, dgh_rows)
        dgx2 = dgx.reshape(rows, n_gates)
        # Rows in PyTorch's order; the weight gradients are column views of these.
        if tape.additive:  # dgx == dgh: one GEMM gives [dW_ih, db, dW_hh]
            grads = _weight_gradients(workspace, "w", dgx2, xh2, weights)
            w_ih_grad, b_ih_grad, w_hh_grad = grads[:, :inputs], grads[:, inputs], grads[:, inputs + 1:]
            b_hh_grad = b_ih_grad.copy()
        else:  # [dW_ih, db_ih] from [x, 1] and [db_hh, dW_hh] from [1, h]
            grads_x = _weight_gradients(workspace, "w_ih", dgx2, xh2[:, :inputs + 1], weights)
            grads_h = _weight_gradients(workspace, "w_hh", dgh.reshape(rows, n_gates), xh2[:, inputs:], weights)
            w_ih_grad, b_ih_grad = grads_x[:, :inputs], grads_x[:, inputs]
            b_hh_grad, w_hh_grad = grads_h[:, 0], grads_h[:, 1:]
        gemm.input_gradient(dgx2, weights.w_ih, x_grad.reshape(rows, -1),
                            gemm.hoisted_gemm_blocks(rows, inputs, n_gates, dtype.itemsize, small_kernel_available()))
    return DirectionGrads(
        w_ih=w_ih_grad, w_hh=w_hh_grad, b_ih=np.ascontiguousarray(b_ih_grad), b_hh=np.ascontiguousarray(b_hh_grad),
        extra=weights.to_natural(dp_rows.sum(axis=0)), x=x_grad if tape.order is None else reorder(x_grad, tape.order),
        state=weights.state_from_kernel(ds[steps % 2], n_state),
    )


def _weight_gradients(workspace, role, dg2, inputs2, weights: DirectionWeights) -> np.ndarray:
    """dg2^T @ inputs2 with its rows in PyTorch's gate order, a new (G, K) array.

    Through ``gemm.weight_gradients_blocked`` where ``gemm.weight_gradient_blocks`` says
    its small-matrix blocks win (then reordered, when the tiling has hidden parts), else
    ``gemm.weight_gradients``, which puts the rows in place as it sums its slabs.
    """
    rows, n_gates = dg2.shape
    depth = inputs2.shape[1]
    out = aligned_empty((n_gates, depth), dg2.dtype)
    blocks = gemm.weight_gradient_blocks(n_gates, depth, small_kernel_available())
    if blocks is not None:
        gemm.weight_gradients_blocked(dg2, inputs2, out, *blocks, numba.get_num_threads())
        return weights.to_natural(out)
    slabs = workspace.array(f"slabs_{role}", (gemm.reduction_parts(rows), n_gates, depth), dg2.dtype)
    gemm.weight_gradients(dg2, inputs2, out, slabs, weights.natural_rows())
    return out
