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


@functools.cache
def _threadpool_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def blas_single_thread():
    """Hold every BLAS pool (NumPy's and SciPy's OpenBLAS) to one thread."""
    with _threadpool_controller().limit(limits=1, user_api="blas"):
        yield


def batch_chunks(batch: int) -> int:
    """How many row chunks the kernels split the batch into: one per Numba thread."""
    return max(1, min(batch, numba.get_num_threads()))


@dataclass
class DirectionTape:
    """What backward needs from one direction of one layer.

    x        (T, B, I)       the layer input
    gx       (T, B, G)       input projections, by time index
    states   (T + 1, S, B, H) states before each step, by step index
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
    gx = np.matmul(x.reshape(steps * batch, -1), w_ih.T).reshape(steps, batch, n_gates)
    gx += b_ih
    states = np.empty((steps + 1 if keep_tape else 2,) + state0.shape, dtype=dtype)
    states[0] = state0
    gh = np.empty((steps if keep_tape else 1, batch, n_gates), dtype=dtype)
    y = np.empty((steps, batch, hidden), dtype=dtype)
    with blas_single_thread():
        kernels.forward_sequence(gx, np.ascontiguousarray(w_hh.T), b_hh, extra, dtype.type(clip), lengths,
                                 reverse, batch_chunks(batch), states, gh, y)
    final = states[steps % states.shape[0]].copy()
    tape = DirectionTape(x, gx, states, gh, lengths, reverse) if keep_tape else None
    return y, final, tape


def backward_direction(kernels, tape: DirectionTape, w_ih, w_hh, extra, clip, dy, dstate) -> DirectionGrads:
    """Backpropagate ``dy`` (T, B, H) and ``dstate`` (S, B, H) through one direction."""
    steps, batch, n_gates = tape.gx.shape
    dtype = tape.gx.dtype
    ds = np.array(dstate, dtype=dtype, order="C")
    dgx = np.zeros_like(tape.gx)
    dgh = np.empty_like(tape.gh)
    dp_rows = np.zeros((batch, extra.size), dtype=dtype)
    with blas_single_thread():
        kernels.backward_sequence(tape.gx, w_hh, extra, dtype.type(clip), tape.lengths, tape.reverse,
                                  batch_chunks(batch), tape.states, tape.gh, np.ascontiguousarray(dy),
                                  ds, dgx, dgh, dp_rows)
    dgx2 = dgx.reshape(steps * batch, n_gates)
    dgh2 = dgh.reshape(steps * batch, n_gates)
    h_prev = tape.states[:steps, 0].reshape(steps * batch, -1)
    return DirectionGrads(
        w_ih=dgx2.T @ tape.x.reshape(steps * batch, -1),
        w_hh=dgh2.T @ h_prev,
        b_ih=dgx2.sum(axis=0),
        b_hh=dgh2.sum(axis=0),
        extra=dp_rows.sum(axis=0),
        x=(dgx2 @ w_ih).reshape(steps, batch, -1),
        state=ds,
    )
