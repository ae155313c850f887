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


def recurrent_block_rows(batch: int) -> int:
    """Rows per recurrent GEMM block: about half the batch, a multiple of 8, at most 64.

    A function of the batch size only, so that results do not depend on the thread count;
    two blocks for batches up to 128 keeps both cores of a small machine busy with GEMMs
    as large as possible.
    """
    half = -(-batch // 2)
    return min(64, max(8, -(-half // 8) * 8))


def batch_chunks(batch: int, block_rows: int) -> int:
    """Parallel chunks of whole row blocks: one per Numba thread, at most one per block."""
    n_blocks = -(-batch // block_rows)
    return max(1, min(n_blocks, numba.get_num_threads()))


@dataclass
class DirectionTape:
    """What backward needs from one direction of one layer.

    x        (T, B, I)       the layer input
    gx       (T, B, G)       input projections, by time index
    states   (T + 1, B, S*H) states before each step, by step index
    gh       (T, B, G)       recurrent projections, by step index
    lengths  (B,)
    reverse  bool
    """

    x: np.ndarray
    gx: np.ndarray
    states: np.ndarray
    gh: np.ndarray
    lengths: np.ndarray
    reverse: bool


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


def forward_direction(kernels, x, w_ih, w_hh, b_ih, b_hh, extra, clip, lengths, reverse, state0, keep_tape):
    """Run one direction over ``x`` (T, B, I) from ``state0`` (S, B, H).

    Returns ``y`` (T, B, H), the final state (S, B, H) and a :class:`DirectionTape`
    (or None when ``keep_tape`` is false).
    """
    steps, batch, _ = x.shape
    n_gates, hidden = w_hh.shape
    dtype = x.dtype
    gx = np.empty((steps, batch, n_gates), dtype=dtype)
    n_state = state0.shape[0]
    states = np.empty((steps + 1 if keep_tape else 2, batch, n_state * hidden), dtype=dtype)
    states[0] = state0.transpose(1, 0, 2).reshape(batch, -1)
    gh = np.empty((steps if keep_tape else 1, batch, n_gates), dtype=dtype)
    y = np.empty((steps, batch, hidden), dtype=dtype)
    block_rows = recurrent_block_rows(batch)
    with blas_single_thread():
        gemm.input_projection(x.reshape(steps * batch, -1), w_ih, b_ih, gx.reshape(steps * batch, n_gates))
        kernels.forward_sequence(gx, np.ascontiguousarray(w_hh.T), b_hh, extra, dtype.type(clip), lengths,
                                 reverse, batch_chunks(batch, block_rows), block_rows, states, gh, y)
    final = states[steps % states.shape[0]].reshape(batch, n_state, hidden).transpose(1, 0, 2).copy()
    tape = DirectionTape(x, gx, states, gh, lengths, reverse) if keep_tape else None
    return y, final, tape


def backward_direction(kernels, tape: DirectionTape, w_ih, w_hh, extra, clip, dy, dstate) -> DirectionGrads:
    """Backpropagate ``dy`` (T, B, H) and ``dstate`` (S, B, H) through one direction."""
    steps, batch, n_gates = tape.gx.shape
    rows = steps * batch
    dtype = tape.gx.dtype
    n_state, _, hidden = dstate.shape
    ds = np.ascontiguousarray(dstate.transpose(1, 0, 2), dtype=dtype).reshape(batch, -1)
    dgx = np.empty_like(tape.gx)
    dgh = np.empty_like(tape.gh)
    dp_rows = np.zeros((batch, extra.size), dtype=dtype)
    grads = DirectionGrads(
        w_ih=np.empty_like(w_ih), w_hh=np.empty_like(w_hh), b_ih=np.empty(n_gates, dtype),
        b_hh=np.empty(n_gates, dtype), extra=None, x=np.empty_like(tape.x), state=None,
    )
    block_rows = recurrent_block_rows(batch)
    with blas_single_thread():
        kernels.backward_sequence(tape.gx, w_hh, extra, dtype.type(clip), tape.lengths, tape.reverse,
                                  batch_chunks(batch, block_rows), block_rows, tape.states, tape.gh,
                                  np.ascontiguousarray(dy), ds, dgx, dgh, dp_rows)
        dgx2 = dgx.reshape(rows, n_gates)
        dgh2 = dgh.reshape(rows, n_gates)
        gemm.weight_gradients(dgx2, tape.x.reshape(rows, -1), grads.w_ih, grads.b_ih)
        h_prev = np.ascontiguousarray(tape.states[:steps, :, :hidden]).reshape(rows, -1)
        gemm.weight_gradients(dgh2, h_prev, grads.w_hh, grads.b_hh)
        gemm.input_gradient(dgx2, w_ih, grads.x.reshape(rows, -1))
    grads.extra = dp_rows.sum(axis=0)
    grads.state = ds.reshape(batch, n_state, hidden).transpose(1, 0, 2)
    return grads
