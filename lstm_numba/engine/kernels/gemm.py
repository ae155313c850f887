"""The hoisted GEMMs of forward and backward, shared by every gate.

They run in parallel over blocks whose boundaries depend only on the shapes, never on the
thread count, so their results are bitwise reproducible whatever ``NUMBA_NUM_THREADS`` is.
Every BLAS call runs single-threaded inside Numba's threads: the caller holds the BLAS
pools to one thread (docs/performance.md: oversubscription costs up to 20x).
"""

from numba import njit, prange

from lstm_numba.config import FASTMATH
from lstm_numba.engine.kernels.blas import blocked_gemm, gemm_tn


@njit(inline="always")
def split(part, n_parts, total):
    """Range [lo, hi) of ``part`` when ``total`` items are split into ``n_parts``."""
    return part * total // n_parts, (part + 1) * total // n_parts


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
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


#: The input gradient ``dx = dg @ W_ih`` (N, G) @ (G, I), under the name the profiler times
#: (``lstm_numba.profiling.KERNEL_PHASES``).
input_gradient = row_block_gemm


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def input_projection(a, b, out, task_rows, blocks):
    """out = a @ b in fixed tasks of ``task_rows`` rows, in parallel over the tasks.

    The input projection ``gx = [x, 1] @ [W_ih^T; bias]`` (N, I + 1) @ (I + 1, G).

    a          (N, K)   any row stride (a view of the tape); N a multiple of ``task_rows``
    b          (K, M)
    out        (N, M)   out
    task_rows  int      rows per task: whole time steps (``engine.tiling.projection_blocks``)
    blocks     3 ints   (rows, columns, depth) of ``blocked_gemm``'s blocks inside a task

    Every task has the same shape wherever it falls, so a row's result depends only on its
    place in its task: a chunk of steps padded to whole tasks reproduces these bits.
    """
    n_tasks = a.shape[0] // task_rows
    for task in prange(n_tasks):
        lo = task * task_rows
        blocked_gemm(a, b, out, lo, lo + task_rows, blocks[0], blocks[1], blocks[2], 0.0)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
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


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
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
