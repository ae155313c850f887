"""Compiled passes over whole arrays: the finite check, the tape's input fill and the
weights' transposition.

NumPy does each in more passes than one: ``np.isfinite(x).all()`` writes a boolean array
the size of ``x`` and reads it again, and ``xh[..., :I] = x`` followed by
``xh[..., I] = 1`` sweeps the tape twice (and a reverse direction's reordering makes a
third copy first). Measured, small config (T=50, B=32, I=32): the check and the fill took
8 and 12 us of a 310 us forward.
"""

import numpy as np
from numba import njit, prange

from lstm_numba.config import FASTMATH
from lstm_numba.engine.kernels.views import unit_stride

#: The ``order`` that tells ``fill_inputs`` to copy the steps in order.
IN_ORDER = np.zeros((0, 0), dtype=np.int64)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def count_non_finite(values):
    """How many entries of ``values`` are NaN or +-Inf.

    values  (N,)  any float dtype, contiguous

    One vectorised pass on one thread: in a parallel loop Numba left the comparison
    scalar, and it ran 4x slower on two threads than this on one (T*B*H = 819200
    float32 values: 140 against 33 us). The FASTMATH policy keeps NaN and Inf semantics,
    so the comparison is not folded away.
    """
    bad = 0
    for i in range(values.size):
        if not abs(values[i]) < np.inf:
            bad += 1
    return bad


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def same_values(a, b):
    """Whether the contiguous 1-D float arrays ``a`` and ``b`` hold the same values (NaN never
    equals), in one vectorised pass on one thread."""
    if a.size != b.size:
        return False
    differ = 0
    for i in range(a.size):
        differ += a[i] != b[i]
    return differ == 0


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def fill_inputs(x, order, xh):
    """Copy a layer's input into the tape's ``[x, 1]`` columns, in step order.

    x      (T, B, I)    in: the layer input, C-contiguous
    order  (T, B) int64 in: for a reverse direction, the step of ``x`` that each row's
                        step s takes (``engine.reversal_index``); ``IN_ORDER`` (0 x 0)
                        for a forward direction
    xh     (T2, B, K)   out: for s < T, ``xh[s, b, :I] = x[order[s, b], b]`` (or
                        ``x[s, b]``) and ``xh[s, b, I] = 1``; T2 >= T, K > I, C-contiguous
    """
    steps, batch, inputs = x.shape
    reverse = order.shape[0] > 0
    for s in prange(steps):
        for b in range(batch):
            src = x[order[s, b], b] if reverse else x[s, b]
            dst = xh[s, b]
            for i in range(inputs):
                dst[i] = src[i]
            dst[inputs] = 1.0


#: Side of the square tiles ``transpose_parts`` moves through a local buffer.
TRANSPOSE_TILE = 16


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def transpose_parts(src, dst):
    """``dst[u, k, b, j] = src[b, u, j, k]``: weights in PyTorch's row order, transposed into
    one contiguous column part per hidden part (``engine.DirectionWeights``).

    src  (n_blocks, U, W, K)   in: the (n_blocks * H, K) weights split by rows, H = U * W;
                               unit stride along K
    dst  (U, K, n_blocks, W)   out: unit stride along W

    In parallel over tiles of ``TRANSPOSE_TILE`` squared, each read into a local buffer and
    written out row by row. NumPy's transposing copy steps through one array element by
    element: the medium benchmark's W_hh (1024 x 256 float32) took 306 us, and 103 us here
    on 2 threads (W_ih, 1024 x 128: 95 and 50 us).
    """
    n_blocks, n_parts, width, depth = src.shape
    tile_size = TRANSPOSE_TILE
    k_tiles = (depth + tile_size - 1) // tile_size
    for task in prange(n_blocks * n_parts * k_tiles):
        b = task // (n_parts * k_tiles)
        u = task // k_tiles % n_parts
        k0 = task % k_tiles * tile_size
        k1 = min(k0 + tile_size, depth)
        tile = np.empty((tile_size, tile_size), dtype=src.dtype)
        for j0 in range(0, width, tile_size):
            j1 = min(j0 + tile_size, width)
            if j1 - j0 == tile_size and k1 - k0 == tile_size:  # whole tile: fixed trip counts, unit strides
                for j in range(tile_size):
                    src_row = unit_stride(src[b, u, j0 + j, k0:k1])
                    for k in range(tile_size):
                        tile[k, j] = src_row[k]
                for k in range(tile_size):
                    dst_row = unit_stride(dst[u, k0 + k, b, j0:j1])
                    tile_row = tile[k]
                    for j in range(tile_size):
                        dst_row[j] = tile_row[j]
            else:
                for j in range(j0, j1):
                    for k in range(k0, k1):
                        dst[u, k, b, j] = src[b, u, j, k]
