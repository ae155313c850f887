"""The time-loop kernels, as a template for :mod:`lstm_numba.kernels.codegen`.

Codegen copies everything below the ``TEMPLATE BODY`` marker into a generated module
whose header binds, as module globals, the chosen gate's ``gate_forward`` and
``gate_backward`` and the bound activations ``act`` and ``ract`` (each ``x -> (y, dy/dx)``).
Numba freezes those globals as compile-time constants and inlines them, so a plugin's
pointwise code runs inside these loops exactly as a built-in's does, and ``cache=True``
works because the generated module is a real file.

Shapes: T steps, B batch rows, H hidden units, G = n_blocks * H gate pre-activations,
S state vectors (row 0 is h), P extra gate parameters.

The time loops split the batch into ``n_chunks`` runs of whole row blocks. A chunk runs
all T steps for its rows, so a pass has no barrier per step. Block boundaries depend only
on the problem's shape, never on the thread count, so results are bitwise reproducible
whatever ``NUMBA_NUM_THREADS`` is. BLAS calls run single-threaded inside Numba's threads
(the caller holds the pools). The hoisted GEMMs, which do not depend on the gate, live in
:mod:`lstm_numba.kernels.gemm`.

Row ``b`` is active at step ``s`` while ``s < lengths[b]``. Its time index is ``s`` going
forward and ``lengths[b] - 1 - s`` in reverse, so the reverse direction starts at each
row's own last valid step. Inactive rows keep their state and output zeros.
"""

# Placeholders so that this file imports on its own; codegen replaces them.
gate_forward = gate_backward = act = ract = None
FASTMATH: set = set()

# ----------------------------------------------------------------- TEMPLATE BODY
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

from lstm_numba.kernels.gemm import split  # noqa: E402


@njit(inline="always")
def time_index(step, length, reverse):
    """Time index that a row of ``length`` valid steps processes at loop ``step``."""
    return length - 1 - step if reverse else step


@njit(inline="always")
def blocked_dot(a, b, out, r0, r1, block_rows):
    """out[r0:r1] = a[r0:r1] @ b, one GEMM per fixed block of ``block_rows`` rows.

    ``r0`` and ``r1`` fall on block boundaries (or at the end), so every block is
    computed with the same shape whoever computes it: row results do not depend on the
    thread count (OpenBLAS results do depend on the number of rows in a call).
    """
    for lo in range(r0, r1, block_rows):
        hi = min(lo + block_rows, r1)
        np.dot(a[lo:hi], b, out[lo:hi])


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def forward_sequence(gx, w_hh_t, b_hh, p, clip, lengths, reverse, n_chunks, block_rows, states, gh_hist, y):
    """Run one direction of one layer over the whole sequence.

    gx         (T, B, G)   in: x_t @ W_ih^T + b_ih for every step
    w_hh_t     (H, G)      in: W_hh transposed, C-contiguous
    b_hh       (G,)        in
    p          (P,)        in: extra gate parameters
    clip       scalar      in: cell clip (inf when off)
    lengths    (B,) int64  in: valid steps per row, 1..T
    reverse    bool        in: run the reverse direction
    n_chunks   int         in: parallel chunks, each a run of whole row blocks
    block_rows int         in: rows per recurrent GEMM block (fixed for a given B)
    states     (T_s, B, S*H) in/out: states[0] holds the initial state. With T_s = T + 1
                          (training) states[s] is the state before step s and states[T]
                          the final one; with T_s = 2 (inference) the two slots alternate
                          and the final state is states[T % 2].
    gh_hist    (T_g, B, G) out: h_{s-1} @ W_hh^T + b_hh; T_g = T keeps every step for
                          backward, T_g = 1 keeps only scratch.
    y          (T, B, H)   out: h_t at valid steps, zeros at padded ones
    """
    n_steps, batch, n_gates = gx.shape
    n_slots = states.shape[0]
    n_gh = gh_hist.shape[0]
    n_blocks = (batch + block_rows - 1) // block_rows
    hidden = y.shape[2]
    h_prev = np.empty((batch, hidden), dtype=states.dtype)
    for chunk in prange(n_chunks):
        b0, b1 = split(chunk, n_chunks, n_blocks)
        r0 = b0 * block_rows
        r1 = min(b1 * block_rows, batch)
        for s in range(n_steps):
            src = s % n_slots
            dst = (s + 1) % n_slots
            gh = gh_hist[s % n_gh]
            for b in range(r0, r1):
                h_prev[b] = states[src, b, :hidden]
            blocked_dot(h_prev, w_hh_t, gh, r0, r1, block_rows)
            for b in range(r0, r1):
                length = lengths[b]
                if s < length:
                    t = time_index(s, length, reverse)
                    for j in range(n_gates):
                        gh[b, j] += b_hh[j]
                    gate_forward(gx[t, b], gh[b], states[src, b], p, clip, act, ract, states[dst, b])
                    y[t, b] = states[dst, b, :hidden]
                else:
                    states[dst, b] = states[src, b]
                    y[s, b] = 0.0


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FASTMATH)
def backward_sequence(gx, w_hh, p, clip, lengths, reverse, n_chunks, block_rows, states, gh_hist, dy, ds, dgx,
                      dgh, dp_rows):
    """Backpropagate one direction of one layer through the whole sequence.

    gx, p, clip, lengths, reverse, n_chunks, block_rows   as in ``forward_sequence``
    w_hh     (G, H)        in: W_hh, C-contiguous
    states   (T + 1, B, S*H) in: the training-mode state history of forward
    gh_hist  (T, B, G)     in: the recurrent projections forward saved
    dy       (T, B, H)     in: dLoss/dy
    ds       (B, S*H)      in: dLoss/d(final state); out: dLoss/d(initial state)
    dgx      (T, B, G)     out: dLoss/dgx by time index, zeros at padded steps
    dgh      (T, B, G)     out: dLoss/dgh by step index
    dp_rows  (B, P)        out: per-row dLoss/dp; the caller zero-fills it and sums the
                            rows in a fixed order, so the result does not depend on chunks
    """
    n_steps, batch, n_gates = gx.shape
    hidden = dy.shape[2]
    ds_prev = np.empty_like(ds)
    recurrent = np.empty((batch, hidden), dtype=ds.dtype)
    n_blocks = (batch + block_rows - 1) // block_rows
    for chunk in prange(n_chunks):
        b0, b1 = split(chunk, n_chunks, n_blocks)
        r0 = b0 * block_rows
        r1 = min(b1 * block_rows, batch)
        for s in range(n_steps - 1, -1, -1):
            for b in range(r0, r1):
                length = lengths[b]
                if s < length:
                    t = time_index(s, length, reverse)
                    for j in range(hidden):
                        ds[b, j] += dy[t, b, j]
                    gate_backward(
                        gx[t, b], gh_hist[s, b], states[s, b], p, clip, act, ract,
                        ds[b], dgx[t, b], dgh[s, b], ds_prev[b], dp_rows[b],
                    )
                else:
                    dgh[s, b] = 0.0
                    dgx[s, b] = 0.0
                    ds_prev[b] = ds[b]
            blocked_dot(dgh[s], w_hh, recurrent, r0, r1, block_rows)
            for b in range(r0, r1):
                ds[b] = ds_prev[b]
                for j in range(hidden):
                    ds[b, j] += recurrent[b, j]


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def step_forward(gx, gh, s_prev, p, clip, s_next):
    """One row, one step of the gate with the bound activations (for plugin checks)."""
    gate_forward(gx, gh, s_prev, p, clip, act, ract, s_next)


@njit(cache=True, error_model="numpy", fastmath=FASTMATH)
def step_backward(gx, gh, s_prev, p, clip, ds_next, dgx, dgh, ds_prev, dp):
    """The gate's backward for one row and one step (for plugin checks)."""
    gate_backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp)
