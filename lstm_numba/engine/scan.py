"""Run one direction of one layer of a scan gate (``Gate.scan``: minGRU, minLSTM) as a
parallel scan over time: the execution path beside the step loop of
:mod:`lstm_numba.engine.direction`, used where forward keeps a tape for backward.

Forward: ``gx = x @ W_ih^T + b`` for all steps in one BLAS GEMM, the gate's log
coefficients per step (the generated ``scan_coefficients``), then the chunked log-space
scan (:func:`lstm_numba.engine.kernels.scan.log_scan_forward`). Backward: the reverse
scan of the gradient (``linear_scan_backward``), the gate's coefficient backward, then
``dW_ih``, ``db`` and ``dx`` as GEMMs. Everything in step order: a reverse direction
reverses each row's valid steps first, as the step loop does. BLAS is held to one thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lstm_numba.engine import blas_control, hooks, tiling
from lstm_numba.engine.direction import DirectionGrads, reorder, reversal_index
from lstm_numba.engine.kernels import scan


@dataclass
class ScanTape:
    """What backward needs from one scan direction, in step order.

    x        (T, B, I)  the layer input
    gx       (T, B, G)  input projections
    log_a, log_b, h (T, B, H)  the log coefficients and the states after each step
    h0       (B, H)     the initial state
    lengths  (B,); order (T, B) or None: the reversal index of a reverse direction
    w_ih     (G, I)     the input weights forward ran with
    """

    x: np.ndarray
    gx: np.ndarray
    log_a: np.ndarray
    log_b: np.ndarray
    h: np.ndarray
    h0: np.ndarray
    lengths: np.ndarray
    order: np.ndarray | None
    w_ih: np.ndarray


def _chunks(steps: int) -> tuple[int, int]:
    chunk = tiling.scan_chunk_steps(steps)
    return chunk, -(-steps // chunk)


def scan_forward_direction(kernels, workspace, x, w_ih, w_hh, b_ih, b_hh, extra, clip, lengths, reverse, state0,
                           keep_tape, start=0, weight_cache=None, keep_states=False, w_hr=None, zoneout=None,
                           recurrent_dropout=None):
    """``forward_direction``'s contract (its arguments and its four results) for a scan
    gate, whose single state is h and which has no recurrent weights, extra parameters
    or projection; ``start`` and ``weight_cache`` (a stream's) do not apply here, and
    ``zoneout`` and ``recurrent_dropout`` are None (the layer refuses them for a scan gate)."""
    steps, batch, inputs = x.shape
    n_gates = w_ih.shape[0]
    hidden = n_gates // kernels.gate.n_blocks
    dtype = x.dtype
    order = reversal_index(lengths, steps) if reverse else None
    xs = np.ascontiguousarray(reorder(x, order) if reverse else x)
    with blas_control.blas_single_thread():
        gx = (xs.reshape(steps * batch, inputs) @ w_ih.T + b_ih).reshape(steps, batch, n_gates)
    log_a, log_b, h = (np.empty((steps, batch, hidden), dtype) for _ in range(3))
    h0 = np.ascontiguousarray(state0[0])
    chunk, n_chunks = _chunks(steps)
    hooks.run("scan_coefficients", kernels.scan_coefficients, gx, dtype.type(clip), lengths, log_a, log_b)
    hooks.run("log_scan_forward", scan.log_scan_forward, log_a, log_b, h0, chunk,
              np.empty_like(h), np.empty_like(h), *(np.empty((n_chunks, batch, hidden), dtype) for _ in range(2)), h)
    final = [h[steps - 1].copy()]  # padded steps keep the state: the last step holds each row's final h
    y = h * (np.arange(steps)[:, None] < lengths[None, :])[:, :, None].astype(dtype)
    tape = ScanTape(xs, gx, log_a, log_b, h, h0, lengths, order, w_ih) if keep_tape else None
    y = reorder(y, order) if reverse else y
    return y, final, tape, ([y.copy()] if keep_states else None)


def scan_backward_direction(kernels, workspace, tape: ScanTape, clip, dy, dstate) -> DirectionGrads:
    """``backward_direction``'s contract for a :class:`ScanTape`."""
    steps, batch, hidden = tape.h.shape
    dtype = tape.h.dtype
    inputs = tape.x.shape[2]
    dh = reorder(dy, tape.order) if tape.order is not None else np.array(dy, dtype=dtype)
    dh = dh * (np.arange(steps)[:, None] < tape.lengths[None, :])[:, :, None].astype(dtype)  # y is 0 there
    dh[steps - 1] += dstate[0]
    chunk, n_chunks = _chunks(steps)
    d_log_a, d_log_b = np.empty_like(dh), np.empty_like(dh)
    dh0 = np.empty((batch, hidden), dtype)
    hooks.run("linear_scan_backward", scan.linear_scan_backward, tape.log_a, tape.log_b, tape.h, tape.h0,
              np.ascontiguousarray(dh), chunk, np.empty_like(dh), np.empty_like(dh),
              np.empty((n_chunks, batch, hidden), dtype), d_log_a, d_log_b, dh0)
    dgx = np.empty_like(tape.gx)
    hooks.run("scan_coefficients_backward", kernels.scan_coefficients_backward, tape.gx, dtype.type(clip),
              tape.lengths, d_log_a, d_log_b, dgx)
    rows = dgx.reshape(steps * batch, -1)
    with blas_control.blas_single_thread():
        d_w_ih = rows.T @ tape.x.reshape(steps * batch, inputs)
        dx = (rows @ tape.w_ih).reshape(steps, batch, inputs)
    dx = reorder(dx, tape.order) if tape.order is not None else dx
    return DirectionGrads(d_w_ih, None, rows.sum(axis=0), None, np.zeros(0, dtype), dx, [dh0])
