"""The hoisted GEMMs of forward and backward, shared by every gate.

They run in parallel over blocks whose boundaries depend only on the shapes, never on the
thread count, so their results are bitwise reproducible whatever ``NUMBA_NUM_THREADS`` is.
Every BLAS call runs single-threaded inside Numba's threads: the caller holds the BLAS
pools to one thread (DESIGN.md section 3: oversubscription costs up to 20x).
"""

import numpy as np
from numba import njit, prange

from lstm_numba.config import FASTMATH

#: Rows per block of the hoisted GEMMs over all T * B rows (input projection, dx).
GEMM_ROW_BLOCK = 512
#: Row ranges the weight-gradient sums over T * B are split into (partial slabs).
REDUCTION_PARTS = 8


@njit(inline="always")
def split(part, n_parts, total):
    """Range [lo, hi) of ``part`` when ``total`` items are split into ``n_parts``."""
    return part * total // n_parts, (part + 1) * total // n_parts


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def input_projection(x2, w_ih, b_ih, gx2):
    """gx2 = x2 @ w_ih^T + b_ih, in parallel over fixed row blocks.

    x2    (N, I)   N = T * B rows
    w_ih  (G, I)
    b_ih  (G,)
    gx2   (N, G)   out
    """
    w_t = np.ascontiguousarray(w_ih.T)
    n_rows = x2.shape[0]
    n_blocks = (n_rows + GEMM_ROW_BLOCK - 1) // GEMM_ROW_BLOCK
    for block in prange(n_blocks):
        lo = block * GEMM_ROW_BLOCK
        hi = min(lo + GEMM_ROW_BLOCK, n_rows)
        np.dot(x2[lo:hi], w_t, gx2[lo:hi])
        for r in range(lo, hi):
            for j in range(gx2.shape[1]):
                gx2[r, j] += b_ih[j]


def reduction_parts(n_rows: int) -> int:
    """How many row ranges (and slabs) ``weight_gradients`` splits a sum over ``n_rows`` into."""
    return min(REDUCTION_PARTS, -(-n_rows // GEMM_ROW_BLOCK))


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def weight_gradients(dg2, inputs2, dw, db, slabs):
    """dw = dg2^T @ inputs2 and db = column sums of dg2.

    dg2      (N, G)        gate gradients, N = T * B rows
    inputs2  (N, K)        what the gates saw (x or h_{t-1})
    dw       (G, K)        out
    db       (G,)          out
    slabs    (R, G, K)     scratch, R = reduction_parts(N)

    The sum over N is split into R row ranges (a function of N only), each one GEMM into
    its own slab in parallel; the slabs are then added in a fixed order, in parallel over
    rows of ``dw``. Deterministic whatever the thread count.
    """
    n_rows, n_gates = dg2.shape
    n_parts = slabs.shape[0]
    bias_slabs = np.zeros((n_parts, n_gates), dtype=dw.dtype)
    for part in prange(n_parts):
        lo, hi = split(part, n_parts, n_rows)
        np.dot(dg2[lo:hi].T, inputs2[lo:hi], slabs[part])
        for r in range(lo, hi):
            for j in range(n_gates):
                bias_slabs[part, j] += dg2[r, j]
    for g in prange(n_gates):
        dw[g] = slabs[0, g]
        db[g] = bias_slabs[0, g]
        for part in range(1, n_parts):
            dw[g] += slabs[part, g]
            db[g] += bias_slabs[part, g]


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def input_gradient(dg2, w_ih, dx2):
    """dx2 = dg2 @ w_ih, in parallel over fixed row blocks.

    dg2   (N, G)
    w_ih  (G, I)
    dx2   (N, I)   out
    """
    n_rows = dg2.shape[0]
    n_blocks = (n_rows + GEMM_ROW_BLOCK - 1) // GEMM_ROW_BLOCK
    for block in prange(n_blocks):
        lo = block * GEMM_ROW_BLOCK
        hi = min(lo + GEMM_ROW_BLOCK, n_rows)
        np.dot(dg2[lo:hi], w_ih, dx2[lo:hi])
