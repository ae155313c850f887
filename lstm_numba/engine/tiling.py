"""Every shape-to-block decision of the engine, in one module.

How a time step is split over threads (:class:`Tiling`, :func:`choose_tiling`), whether the
input projection is fused into the step, and the block shapes of every GEMM (the step
GEMMs, the hoisted input projection and input gradient, the weight-gradient sums). Each
is a function of the shapes, the machine's core count and its BLAS core only, never of
the thread count, so results are bitwise identical whatever ``NUMBA_NUM_THREADS`` is.

Nothing here is compiled, and the generated kernels do not import it: the policy reaches
them as arguments, so a policy change leaves the kernels' source (and their disk cache)
as it is.

Why blocks at all: OpenBLAS's AVX-512 builds run small GEMMs through a kernel that does
not pack its operands, and a time step's GEMM split into blocks that fit it runs faster
(measured, with the limits of where it wins, in :mod:`lstm_numba.engine.kernels.blas`).
Blocks are used only where they were measured to win (:func:`gemm_blocks`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numba

from lstm_numba.engine import blas_control

#: OpenBLAS's limit on ``M*N*K`` for its small-matrix GEMM kernel.
SMALL_KERNEL_MAX_MNK = 1_000_000


#: Blocking pays only while the weight matrix is about the size of L2 and blocks have few rows.
SMALL_GEMM_MAX_WEIGHT_BYTES = 1280 * 1024


SMALL_GEMM_MAX_ROWS = 64


#: Columns per block on the small-matrix path (measured best for both time loops; the fused
#: forward step takes twice as many, ``engine.fused_step_blocks``).
SMALL_GEMM_COLUMNS = 32


def gemm_blocks(rows: int, cols: int, depth: int, itemsize: int, small_kernel: bool) -> tuple[int, int]:
    """(column block, depth block) for a time step's ``rows x depth @ depth x cols`` GEMM.

    One call when the GEMM already takes the small-matrix path or blocking is not measured
    to win; otherwise blocks of ``SMALL_GEMM_COLUMNS`` columns and the depth halved until
    each block fits ``SMALL_KERNEL_MAX_MNK``. A function of the shape and the BLAS core.
    """
    if (not small_kernel or rows * cols * depth <= SMALL_KERNEL_MAX_MNK or rows > SMALL_GEMM_MAX_ROWS
            or cols * depth * itemsize > SMALL_GEMM_MAX_WEIGHT_BYTES or cols <= SMALL_GEMM_COLUMNS):
        return cols, depth
    pieces = 1
    while rows * SMALL_GEMM_COLUMNS * -(-depth // pieces) > SMALL_KERNEL_MAX_MNK:
        pieces *= 2
    return SMALL_GEMM_COLUMNS, -(-depth // pieces)
#: Largest row block of the hoisted GEMMs over all T * B rows (input projection, dx).
GEMM_ROW_BLOCK = 512


#: Their number of row blocks is rounded up to a multiple of this (or of the next power of
#: two, when fewer), so that 2, 4 or 8 threads share them evenly (13 blocks on 2 threads
#: would leave one idle for the last block).
GEMM_BLOCK_MULTIPLE = 8
#: Most row ranges the weight-gradient sums over T * B are split into (partial slabs).
REDUCTION_PARTS = 8


#: Rows per block of ``row_block_gemm`` when a block this tall takes OpenBLAS's
#: small-matrix path (:mod:`lstm_numba.engine.kernels.blas`). Measured, small config (T*B = 1600,
#: SkylakeX kernels, 2 threads): the input projection 69 -> 57 us, dx 70 -> 56 us; 64 rows
#: did as well, 128 rows worse.
SMALL_ROW_BLOCK = 32


#: When ``weight_gradients_blocked`` is used: at most this many gates (rows of dW), and
#: chunks of N of at least this many rows. Measured against ``weight_gradients`` with one
#: slab per core, 2 threads, T*B = 1600-12800: 20-27% faster with 256 gates (K = 81-97),
#: 8-13% with 512 (K = 161); even with 768 (K = 257) and 1024 (K = 129); 10% slower with
#: 1536; slower too with chunks under about 120 rows (K > 260).
WEIGHT_GRADIENT_MAX_GATES = 512


WEIGHT_GRADIENT_MIN_ROWS = 120


def hoisted_gemm_blocks(n_rows: int, n_cols: int, depth: int, itemsize: int,
                        small_kernel: bool) -> tuple[int, int, int]:
    """(rows, columns, depth) per block of ``input_projection`` and ``input_gradient``.

    For ``(n_rows, depth) @ (depth, n_cols)``, in order:

    - ``SMALL_ROW_BLOCK`` rows, whole columns and depth, when the BLAS has the small-matrix
      kernel and a block that tall fits it;
    - blocks of ``SMALL_GEMM_COLUMNS`` columns and as many rows as fit the small-matrix
      kernel (16 to ``SMALL_GEMM_MAX_ROWS``), when the GEMM is at least as deep as it
      is wide and ``gemm_blocks`` says such blocks win (weights about the size of L2
      or smaller). This is the input gradient, whose depth is the gate count; the kernel
      reads the weights unpacked, so they must start on a cache line
      (``engine.DirectionWeights``: at NumPy's 16-byte offset these blocks gained
      nothing). Measured against the next rule, N = 6400, 2 threads, SkylakeX kernels:
      (1024 x 128) 4.1 -> 3.4 ms, (1024 x 64) 2.4 -> 1.8 ms, (512 x 128) 1.9 -> 1.7 ms,
      (257 x 256) 2.0 -> 1.9 ms; at N = 25600, (1024 x 128) 18.5 -> 14.3 ms; in float64,
      (1024 x 128) ran as fast either way (11.5-13.3 ms). Shallow and wide GEMMs (the input
      projection) lost: (65 x 1024) 2.0 -> 3.0 ms;
    - otherwise whole columns and depth, at most ``GEMM_ROW_BLOCK`` rows and a multiple of 8,
      the number of blocks rounded up to a multiple of ``GEMM_BLOCK_MULTIPLE`` or of the next
      power of two, whichever is smaller.

    A function of the shape and the BLAS core only.
    """
    if small_kernel and SMALL_ROW_BLOCK * n_cols * depth <= SMALL_KERNEL_MAX_MNK:
        return SMALL_ROW_BLOCK, n_cols, depth
    if depth >= n_cols:
        rows = SMALL_KERNEL_MAX_MNK // (SMALL_GEMM_COLUMNS * depth)
        rows = min(SMALL_GEMM_MAX_ROWS, max(16, rows))
        col_block, depth_block = gemm_blocks(rows, n_cols, depth, itemsize, small_kernel)
        if col_block < n_cols:
            return rows, col_block, depth_block
    n_blocks = -(-n_rows // GEMM_ROW_BLOCK)
    multiple = min(GEMM_BLOCK_MULTIPLE, 1 << (n_blocks - 1).bit_length())
    n_blocks = -(-n_blocks // multiple) * multiple
    return max(8, (-(-n_rows // n_blocks) + 7) // 8 * 8), n_cols, depth


#: Most time steps per task of the input projection (:func:`projection_blocks`).
PROJECTION_MAX_STEPS = 8


#: Rows per task that the input projection aims at outside the small-matrix path. Measured
#: on a busy 2-core machine (so roughly), projection alone: large (T=200, B=128: 2 steps of
#: 128 rows) 190-306 ms against 198-348 with the 464-row blocks it had before; GRU medium
#: (T=100, B=64: 4 steps) 23.5-30 ms against 21.7-28.6 with 400-row blocks; 512-row tasks
#: were no faster, and tasks of 256 columns slower.
PROJECTION_TASK_ROWS = 256


@dataclass(frozen=True)
class ProjectionBlocks:
    """How ``kernels.gemm.input_projection`` splits ``[x, 1] @ [W_ih^T; b]`` over all steps.

    ``steps``: whole time steps per task (``steps * batch`` rows), counted from step 0 of
    the sequence, the last task padded to full size; ``blocks``: the (rows, columns,
    depth) blocks of ``blocked_gemm`` inside a task.
    """

    steps: int
    blocks: tuple


def projection_blocks(batch: int, n_cols: int, depth: int, itemsize: int, small_kernel: bool) -> ProjectionBlocks:
    """The tasks of the hoisted input projection ``(T * batch, depth) @ (depth, n_cols)``.

    Unlike the other hoisted GEMMs, the projection's blocks are a function of the batch,
    not of T: each task is ``steps`` whole time steps counted from the start of the
    sequence, and the last is padded to full size. OpenBLAS's result for a row depends on
    the shape of the call it is in and on its place there, so this is what makes a step's
    projection the same bits whatever the sequence's length, and so what lets
    ``LSTM.step`` over any chunks of a sequence reproduce the whole-sequence forward
    exactly (the time loops' GEMMs are per step already).

    Rows per task aim at ``SMALL_ROW_BLOCK`` on the small-matrix path, at the rows that
    fit that kernel for deep, narrow GEMMs (column blocks, as ``hoisted_gemm_blocks``), else
    at ``PROJECTION_TASK_ROWS``, in at most ``PROJECTION_MAX_STEPS`` steps: a short sequence
    pads at most 7 steps, and a one-step chunk computes at most 8 steps of rows.
    """
    if small_kernel and SMALL_ROW_BLOCK * n_cols * depth <= SMALL_KERNEL_MAX_MNK:
        target, inner = SMALL_ROW_BLOCK, (SMALL_ROW_BLOCK, n_cols, depth)
    else:
        target, inner = PROJECTION_TASK_ROWS, None
        if depth >= n_cols:
            rows = min(SMALL_GEMM_MAX_ROWS, max(16, SMALL_KERNEL_MAX_MNK // (SMALL_GEMM_COLUMNS * depth)))
            col_block, depth_block = gemm_blocks(rows, n_cols, depth, itemsize, small_kernel)
            if col_block < n_cols:
                target, inner = rows, (rows, col_block, depth_block)
    steps = max(1, min(PROJECTION_MAX_STEPS, target // batch))
    return ProjectionBlocks(steps, inner or (min(steps * batch, GEMM_ROW_BLOCK), n_cols, depth))


def reduction_parts(n_rows: int) -> int:
    """How many row ranges (and slabs) ``weight_gradients`` splits a sum over ``n_rows`` into.

    At most one per core: more slabs than cores only add to the sum that follows (medium
    config on 2 cores: 8 slabs 13.9-14.8 ms, 2 slabs 12.8-14.1 ms, in the same runs). The
    core count, like the tiling's, never the thread count, so that results are bitwise
    identical whatever ``NUMBA_NUM_THREADS`` is.
    """
    cores = numba.config.NUMBA_DEFAULT_NUM_THREADS
    return max(1, min(REDUCTION_PARTS, cores, -(-n_rows // GEMM_ROW_BLOCK)))


def weight_gradient_blocks(n_gates: int, depth: int, small_kernel: bool) -> tuple[int, int] | None:
    """(gates, rows) per block of ``weight_gradients_blocked``, or None to use ``weight_gradients``.

    Blocks of ``SMALL_GEMM_COLUMNS`` gates by as many rows of N as fit the
    small-matrix kernel with a depth of ``depth`` (the width of the tape rows); used for
    at most ``WEIGHT_GRADIENT_MAX_GATES`` gates, in chunks of at least
    ``WEIGHT_GRADIENT_MIN_ROWS`` rows. A function of the shape and the BLAS core.
    """
    gates = SMALL_GEMM_COLUMNS
    rows = SMALL_KERNEL_MAX_MNK // (gates * depth)
    if (not small_kernel or rows < WEIGHT_GRADIENT_MIN_ROWS or n_gates <= gates
            or n_gates > WEIGHT_GRADIENT_MAX_GATES):
        return None
    return gates, rows


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
    each loop's recurrent GEMM (:func:`lstm_numba.engine.kernels.gemm_blocks`, or
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
    #: Whether each loop's step GEMM runs on the engine's microkernel (else BLAS in the
    #: blocks above): :func:`step_kernel`.
    forward_micro: bool = False
    backward_micro: bool = False
    #: A projected layer's (proj_size) blocks: h = m @ W_hr^T in the forward loop,
    #: dL/dm = dL/dh @ W_hr in the backward loop; () without a projection.
    project_blocks: tuple = ()
    unproject_blocks: tuple = ()


def choose_tiling(elementwise: bool, additive: bool, batch: int, inputs: int, hidden: int, n_gates: int,
                  itemsize: int, recurrent: bool = True, proj_size: int = 0) -> Tiling:
    """Choose the tiling for a gate and a shape.

    Elementwise gates split the hidden units into up to one part per core: a power of two
    dividing H, each part at least ``HIDDEN_SPLIT_MIN_UNITS`` wide with at least
    ``HIDDEN_SPLIT_MIN_FLOPS`` of recurrent GEMM per step, over the whole batch in
    blocks of up to 256 rows. Otherwise the batch is split into row blocks of about half
    the batch (a multiple of 8, at most 64), each chunk running all steps without a barrier
    (the number of chunks follows the thread count; the blocks, and so the results, do not).

    An additive gate's input projection is fused into the forward step (see
    :func:`fuses_input_projection`) when the fused GEMM runs on OpenBLAS's small-matrix
    kernel. A gate without recurrent weights (``recurrent`` false) has no recurrent GEMM:
    nothing to fuse into, and no GEMM work that would pay for splitting the hidden units.
    A projected layer (``proj_size`` P > 0) always runs one hidden part (its projection
    reads every unit), and its recurrent GEMMs are P deep (forward) and P wide (backward).
    """
    parts = 1
    rec_width = proj_size or hidden
    rec_flops = 2 * batch * rec_width * n_gates if recurrent else 0
    if elementwise and not proj_size:
        while (parts * 2 <= numba.config.NUMBA_DEFAULT_NUM_THREADS and hidden % (parts * 2) == 0
               and hidden // (parts * 2) >= HIDDEN_SPLIT_MIN_UNITS
               and rec_flops // (parts * 2) >= HIDDEN_SPLIT_MIN_FLOPS):
            parts *= 2
    if parts > 1:
        block_rows = min(batch, 256)
    else:
        half = -(-batch // 2)
        block_rows = min(64, max(8, -(-half // 8) * 8))
    n_blocks = -(-batch // block_rows)
    chunks = n_blocks if parts > 1 else max(1, min(n_blocks, numba.get_num_threads()))
    width, part_gates = hidden // parts, n_gates // parts
    small = blas_control.small_kernel_available()
    fused = additive and recurrent and fuses_input_projection(block_rows, part_gates, inputs + 1 + rec_width,
                                                              itemsize, small)
    if fused:
        forward_blocks = fused_step_blocks(block_rows, part_gates, inputs + 1 + rec_width, itemsize, small)
    else:
        forward_blocks = (block_rows, *gemm_blocks(block_rows, part_gates, rec_width, itemsize, small))
    if proj_size:
        backward_blocks = (block_rows, *gemm_blocks(block_rows, proj_size, n_gates, itemsize, small))
        return Tiling(parts, chunks, forward_blocks, backward_blocks, fused,
                      project_blocks=(block_rows, *gemm_blocks(block_rows, proj_size, hidden, itemsize, small)),
                      unproject_blocks=(block_rows, *gemm_blocks(block_rows, hidden, proj_size, itemsize, small)))
    backward_blocks = (block_rows, *gemm_blocks(block_rows, width, n_gates, itemsize, small))
    forward_depth = inputs + 1 + rec_width if fused else rec_width
    return Tiling(parts, chunks, forward_blocks, backward_blocks, fused,
                  forward_micro=recurrent and step_kernel(block_rows, forward_depth, part_gates, small)[0],
                  backward_micro=recurrent and step_kernel(block_rows, n_gates, width, small)[0])


def fuses_input_projection(rows: int, part_gates: int, depth: int, itemsize: int, small_kernel: bool) -> bool:
    """Whether the forward step's GEMM ``rows x depth @ depth x part_gates`` over whole tape
    rows (depth I + 1 + H) runs on OpenBLAS's small-matrix kernel in ``gemm_blocks``'
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
    col_block, depth_block = gemm_blocks(rows, part_gates, depth, itemsize, small_kernel)
    return rows * col_block * depth_block <= SMALL_KERNEL_MAX_MNK
#: Fewest rows per block of the fused forward step's GEMM (``fused_step_blocks``).
FUSED_MIN_BLOCK_ROWS = 8


def fused_step_blocks(rows: int, part_gates: int, depth: int, itemsize: int, small_kernel: bool) -> tuple:
    """(rows, columns, depth) blocks of the fused forward step's GEMM over ``rows`` rows.

    ``gemm_blocks``' blocks, except where those split the columns at full depth: then
    blocks twice as wide (``2 * SMALL_GEMM_COLUMNS``) and as many rows (``rows``
    halved, at least ``FUSED_MIN_BLOCK_ROWS``) as fit the small-matrix kernel. Measured in
    the medium benchmark (64 rows, 512 columns per part, depth 385), alternating in one
    process: forward 14.4-16.2 -> 13.6-14.9 ms and forward+backward 44.5-48.3 -> 42.8-47.1
    ms with 32 x 64 blocks against 64 x 32 (16 x 128 did as well; 32 x 32 gained nothing).
    The unfused loops (depth H, or a split depth) were measured best with 32 columns.
    """
    col_block, depth_block = gemm_blocks(rows, part_gates, depth, itemsize, small_kernel)
    if col_block < part_gates and depth_block == depth:
        wide = 2 * SMALL_GEMM_COLUMNS
        short = rows
        while short > FUSED_MIN_BLOCK_ROWS and short * wide * depth > SMALL_KERNEL_MAX_MNK:
            short = -(-short // 2)
        if short * wide * depth <= SMALL_KERNEL_MAX_MNK:
            return short, min(wide, part_gates), depth
    return rows, col_block, depth_block


def scan_chunk_steps(steps: int) -> int:
    """Steps per time chunk of the parallel scan (:mod:`lstm_numba.engine.kernels.scan`):
    about sqrt(T), at least 16, so that the sequential carry over the chunks and each
    chunk's own pass are both short. A function of T alone: results do not depend on the
    thread count."""
    return max(16, math.isqrt(max(steps - 1, 0)) + 1)


#: Environment variable that forces the time loops' step GEMMs onto one kernel: ``micro``
#: (the engine's microkernel, :mod:`lstm_numba.engine.kernels.microkernel`), ``blas``, or
#: ``auto`` (the default: :func:`step_kernel`'s rule).
STEP_KERNEL_ENV = "LSTM_NUMBA_STEP_KERNEL"
STEP_KERNEL_CHOICES = ("auto", "micro", "blas")


def forced_step_kernel() -> str:
    """``LSTM_NUMBA_STEP_KERNEL``'s value (``auto`` when unset); raises ValueError naming
    the variable for any other value."""
    value = os.environ.get(STEP_KERNEL_ENV, "auto").strip().lower() or "auto"
    if value not in STEP_KERNEL_CHOICES:
        raise ValueError(f"{STEP_KERNEL_ENV}={value!r}: expected one of {', '.join(STEP_KERNEL_CHOICES)}")
    return value


def step_kernel(rows: int, depth: int, cols: int, small_kernel: bool) -> tuple[bool, str]:
    """(microkernel?, why) for a time step's ``rows x depth @ depth x cols`` GEMM.

    The microkernel (:mod:`lstm_numba.engine.kernels.microkernel`) runs every forward step
    GEMM (as deep as it is narrow or shallower: ``depth <= cols``), and every step GEMM
    when the BLAS lacks OpenBLAS's AVX-512 small-matrix kernel (``small_kernel`` false: an
    AVX2 machine, or ``OPENBLAS_CORETYPE`` set to an older core). BLAS keeps the backward
    carry (deep and narrow: ``dgh (rows x G) @ W_hh (G x W)``) where it has that kernel.
    Measured, 2-core Xeon (Ice Lake, AVX-512), shared, float32, 2 threads, one process,
    both forced (``benchmarks/bench_lstm.py --step-kernels``), see docs/performance.md:
    with SkylakeX kernels the microkernel took medium forward 46 -> 32 ms and large
    forward 1.47 -> 1.09 s, but medium forward+backward 104 -> 127 ms (its backward GEMM,
    64x1024 @ 1024x128, ran at 0.8-1.0x BLAS's speed alone, ``bench_step_gemm.py``); with
    the Haswell kernels and an AVX2 target it beat BLAS on both loops' GEMMs
    (``bench_step_gemm.py``: 1.1-5x). ``LSTM_NUMBA_STEP_KERNEL`` overrides the rule. A
    function of the shape and the BLAS core only, never of the thread count.
    """
    forced = forced_step_kernel()
    if forced != "auto":
        return forced == "micro", f"forced by {STEP_KERNEL_ENV}={forced}"
    if not small_kernel:
        return True, "auto: the BLAS has no small-matrix kernel (measured: the microkernel wins every step GEMM)"
    if depth <= cols:
        return True, "auto: a forward-shaped GEMM (depth <= columns; measured: the microkernel wins)"
    return False, "auto: a deep, narrow GEMM on OpenBLAS's small-matrix kernel (measured: BLAS wins)"


def describe_step_kernels(elementwise: bool, additive: bool, batch: int, inputs: int, hidden: int, n_gates: int,
                          itemsize: int, recurrent: bool = True) -> dict:
    """{"forward": text, "backward": text}: which kernel each time loop's step GEMM runs
    for this gate and shape, its shape per tile, and why (for ``lstm-numba profile``)."""
    from lstm_numba.engine.kernels import microkernel

    tile = choose_tiling(elementwise, additive, batch, inputs, hidden, n_gates, itemsize, recurrent)
    if not recurrent:
        return {"forward": "none (no recurrent weights)", "backward": "none (no recurrent weights)"}
    small = blas_control.small_kernel_available()
    rows = tile.forward_blocks[0]
    depth = inputs + 1 + hidden if tile.fused_input else hidden
    shapes = {"forward": (rows, depth, n_gates // tile.parts, tile.forward_blocks),
              "backward": (rows, n_gates, hidden // tile.parts, tile.backward_blocks)}
    texts = {}
    for loop, (m, k, n, blocks) in shapes.items():
        micro, why = step_kernel(m, k, n, small)
        if micro:
            kernel = (f"microkernel ({8 * microkernel.VECTOR_BYTES}-bit vectors, {microkernel.TILE_ROWS}x"
                      f"{microkernel.panel_columns(itemsize)} tiles)")
        else:
            kernel = f"BLAS (OpenBLAS {blas_control.kernel_names()}, blocks {blocks[0]}x{blocks[2]}@{blocks[2]}x{blocks[1]})"
        texts[loop] = f"{kernel}, {m}x{k}@{k}x{n} per tile: {why}"
    return texts
