"""The hoisted GEMMs of forward and backward, shared by every gate.

They run in parallel over blocks whose boundaries depend only on the shapes, never on the
thread count, so their results are bitwise reproducible whatever ``NUMBA_NUM_THREADS`` is.
Every BLAS call runs single-threaded inside Numba's threads: the caller holds the BLAS
pools to one thread (DESIGN.md section 3: oversubscription costs up to 20x).
"""

import numba
from numba import njit, prange

from lstm_numba.config import FASTMATH
from lstm_numba.kernels import blas
from lstm_numba.kernels.blas import blocked_gemm, gemm_tn

#: Largest row block of the hoisted GEMMs over all T * B rows (input projection, dx).
GEMM_ROW_BLOCK = 512
#: Their number of row blocks is rounded up to a multiple of this (or of the next power of
#: two, when fewer), so that 2, 4 or 8 threads share them evenly (13 blocks on 2 threads
#: would leave one idle for the last block).
GEMM_BLOCK_MULTIPLE = 8
#: Most row ranges the weight-gradient sums over T * B are split into (partial slabs).
REDUCTION_PARTS = 8
#: Rows per block of ``row_block_gemm`` when a block this tall takes OpenBLAS's
#: small-matrix path (:mod:`lstm_numba.kernels.blas`). Measured, small config (T*B = 1600,
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


@njit(inline="always")
def split(part, n_parts, total):
    """Range [lo, hi) of ``part`` when ``total`` items are split into ``n_parts``."""
    return part * total // n_parts, (part + 1) * total // n_parts


def hoisted_gemm_blocks(n_rows: int, n_cols: int, depth: int, itemsize: int,
                        small_kernel: bool) -> tuple[int, int, int]:
    """(rows, columns, depth) per block of ``input_projection`` and ``input_gradient``.

    For ``(n_rows, depth) @ (depth, n_cols)``, in order:

    - ``SMALL_ROW_BLOCK`` rows, whole columns and depth, when the BLAS has the small-matrix
      kernel and a block that tall fits it;
    - blocks of ``blas.SMALL_GEMM_COLUMNS`` columns and as many rows as fit the small-matrix
      kernel (16 to ``blas.SMALL_GEMM_MAX_ROWS``), when the GEMM is at least as deep as it
      is wide and ``blas.gemm_blocks`` says such blocks win (weights about the size of L2
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
    if small_kernel and SMALL_ROW_BLOCK * n_cols * depth <= blas.SMALL_KERNEL_MAX_MNK:
        return SMALL_ROW_BLOCK, n_cols, depth
    if depth >= n_cols:
        rows = blas.SMALL_KERNEL_MAX_MNK // (blas.SMALL_GEMM_COLUMNS * depth)
        rows = min(blas.SMALL_GEMM_MAX_ROWS, max(16, rows))
        col_block, depth_block = blas.gemm_blocks(rows, n_cols, depth, itemsize, small_kernel)
        if col_block < n_cols:
            return rows, col_block, depth_block
    n_blocks = -(-n_rows // GEMM_ROW_BLOCK)
    multiple = min(GEMM_BLOCK_MULTIPLE, 1 << (n_blocks - 1).bit_length())
    n_blocks = -(-n_blocks // multiple) * multiple
    return max(8, (-(-n_rows // n_blocks) + 7) // 8 * 8), n_cols, depth


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def row_block_gemm(a, b, out, blocks):
    """out = a @ b, in parallel over fixed row blocks.

    a       (N, K)   any row stride (a view of the tape)
    b       (K, M)
    out     (N, M)   out
    blocks  3 ints   (rows, columns, depth) of each block, ``hoisted_gemm_blocks``; a row
                     block's column and depth blocks run in order on one thread
    """
    n_rows = a.shape[0]
    block_rows = blocks[0]
    n_blocks = (n_rows + block_rows - 1) // block_rows
    for block in prange(n_blocks):
        lo = block * block_rows
        blocked_gemm(a, b, out, lo, min(lo + block_rows, n_rows), block_rows, blocks[1], blocks[2], 0.0)


#: The input projection ``gx = [x, 1] @ [W_ih^T; bias]`` (N, I + 1) @ (I + 1, G), and the
#: input gradient ``dx = dg @ W_ih`` (N, G) @ (G, I): one kernel under the two names the
#: profiler times as separate phases (``lstm_numba.profile.KERNEL_PHASES``).
input_projection = input_gradient = row_block_gemm


def reduction_parts(n_rows: int) -> int:
    """How many row ranges (and slabs) ``weight_gradients`` splits a sum over ``n_rows`` into.

    At most one per core: more slabs than cores only add to the sum that follows (medium
    config on 2 cores: 8 slabs 13.9-14.8 ms, 2 slabs 12.8-14.1 ms, in the same runs). The
    core count, like the tiling's, never the thread count, so that results are bitwise
    identical whatever ``NUMBA_NUM_THREADS`` is.
    """
    cores = numba.config.NUMBA_DEFAULT_NUM_THREADS
    return max(1, min(REDUCTION_PARTS, cores, -(-n_rows // GEMM_ROW_BLOCK)))


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def weight_gradients(dg2, inputs2, dw, slabs, rows):
    """dw[rows] = dg2^T @ inputs2.

    dg2      (N, G)        gate gradients, N = T * B rows
    inputs2  (N, K)        what the gates saw, from the tape (any row stride): columns of
                           [x, 1, h_{t-1}], so that the 1 gives the bias gradient
    dw       (G, K)        out
    slabs    (R, G, K)     scratch, R = reduction_parts(N)
    rows     (G,) int64    the row of ``dw`` that gate g's gradient goes to (the kernels'
                           part-major gate order back to PyTorch's)

    The sum over N is split into R row ranges (a function of N only), each one GEMM into
    its own slab in parallel; the slabs are then added in a fixed order, in parallel over
    rows of ``dw``, which also puts the rows in place. Deterministic whatever the thread
    count.
    """
    n_rows, n_gates = dg2.shape
    n_parts = slabs.shape[0]
    for part in prange(n_parts):
        lo, hi = split(part, n_parts, n_rows)
        gemm_tn(dg2[lo:hi], inputs2[lo:hi], slabs[part], 0.0)
    for g in prange(n_gates):
        row = dw[rows[g]]
        row[:] = slabs[0, g]
        for part in range(1, n_parts):
            row += slabs[part, g]


def weight_gradient_blocks(n_gates: int, depth: int, small_kernel: bool) -> tuple[int, int] | None:
    """(gates, rows) per block of ``weight_gradients_blocked``, or None to use ``weight_gradients``.

    Blocks of ``blas.SMALL_GEMM_COLUMNS`` gates by as many rows of N as fit the
    small-matrix kernel with a depth of ``depth`` (the width of the tape rows); used for
    at most ``WEIGHT_GRADIENT_MAX_GATES`` gates, in chunks of at least
    ``WEIGHT_GRADIENT_MIN_ROWS`` rows. A function of the shape and the BLAS core.
    """
    gates = blas.SMALL_GEMM_COLUMNS
    rows = blas.SMALL_KERNEL_MAX_MNK // (gates * depth)
    if (not small_kernel or rows < WEIGHT_GRADIENT_MIN_ROWS or n_gates <= gates
            or n_gates > WEIGHT_GRADIENT_MAX_GATES):
        return None
    return gates, rows


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def weight_gradients_blocked(dg2, inputs2, dw, block_gates, block_rows, n_tasks):
    """dw = dg2^T @ inputs2, in fixed blocks that take OpenBLAS's small-matrix path.

    dg2          (N, G)   gate gradients, N = T * B rows
    inputs2      (N, K)   as in ``weight_gradients`` (any row stride)
    dw           (G, K)   out
    block_gates  int      rows of ``dw`` per block (``weight_gradient_blocks``)
    block_rows   int      rows of N per chunk
    n_tasks      int      most parallel tasks (the thread count), each a run of blocks

    Each block sums its chunks of N in order, whichever task computes it, so the result
    does not depend on ``n_tasks`` or the thread count. A task walks the chunks outermost,
    so that each chunk of ``inputs2`` stays in cache for all of its blocks (blocks
    outermost re-read all of ``inputs2`` per block: 1.5x slower at K = 321).
    """
    n_rows, n_gates = dg2.shape
    n_blocks = (n_gates + block_gates - 1) // block_gates
    n_tasks = min(n_tasks, n_blocks)
    for task in prange(n_tasks):
        b0, b1 = split(task, n_tasks, n_blocks)
        for lo in range(0, n_rows, block_rows):
            hi = min(lo + block_rows, n_rows)
            for block in range(b0, b1):
                g0 = block * block_gates
                g1 = min(g0 + block_gates, n_gates)
                gemm_tn(dg2[lo:hi, g0:g1], inputs2[lo:hi], dw[g0:g1], 0.0 if lo == 0 else 1.0)
