"""The time-loop kernels, as a template for :mod:`lstm_numba.engine.codegen`.

Codegen copies everything below the ``TEMPLATE BODY`` marker into a generated module
whose header binds, as module globals, the chosen gate's ``gate_forward`` and
``gate_backward`` and the bound activations ``act`` and ``ract`` (each ``x -> (y, dy/dx)``).
Numba freezes those globals as compile-time constants and inlines them, so a plugin's
pointwise code runs inside these loops exactly as a built-in's does, and ``cache=True``
works because the generated module is a real file.

Shapes: T steps, B batch rows, H hidden units, G = n_blocks * H gate pre-activations,
S state vectors (row 0 is h), P extra gate parameters, U hidden parts of W = H / U units.

Each time step is split into tiles: a hidden part (U of them) times a chunk of whole row
blocks. With U = 1 (any gate; ``forward_rows``, ``backward_rows``) a chunk runs all T
steps for its rows, so a pass has no barrier per step. With U > 1 (gates declared
``elementwise``: unit j of the output depends only on unit j of the inputs;
``forward_parts``, ``backward_parts``) each step's tiles run in parallel and end with a
barrier, and each thread reads only its own part of the recurrent weights. The two
tilings are separate kernels, so a process compiles only the one its shapes use. Tile
shapes depend only on the problem's shape, never on the thread count, so results are
bitwise reproducible whatever ``NUMBA_NUM_THREADS`` is. BLAS calls run single-threaded
inside Numba's threads (the caller holds the pools). The hoisted GEMMs, which do not
depend on the gate, live in :mod:`lstm_numba.engine.kernels.gemm`.

Row ``b`` is active at step ``s`` while ``s < lengths[b]``; inactive rows keep their state
and output zeros. The kernels run in step order only: for the reverse direction the engine
reverses each row's valid steps beforehand (and the outputs back afterwards).

A gate with a scan form (``Gate.scan``: minGRU, minLSTM) also gets ``scan_coefficients``
and ``scan_coefficients_backward``, the per-step halves of the parallel scan that
:mod:`lstm_numba.engine.scan` runs; they compile only when called.

A gate without recurrent weights (``Gate.recurrent`` false: IndRNN) gets no recurrent GEMM
in either loop; its ``gx``, hoisted, is the whole pre-activation, and ``w_rec`` and
``w_hh`` are empty (U, 0, .) arrays that only carry the part shapes.

An *additive* gate (``Gate.additive``) reads ``gx`` and ``gh`` only through ``gx + gh``, so
``dgx == dgh``: forward's recurrent GEMM accumulates into ``gx`` (whose input projection
already holds both biases) and the gate gets a zero ``gh``, and backward keeps one
gradient array. That saves two of the largest arrays' memory traffic. Where the engine
fuses the input projection into the step (``engine.Tiling.fused_input``), one GEMM over
the tape row [x_s, 1, h_{s-1}] computes ``gx`` whole, and no pass writes it beforehand.
"""

# Placeholders so that this file imports on its own; codegen replaces them.
gate_forward = gate_backward = act = ract = None
scan_log_coefficients = scan_log_coefficients_backward = None
ADDITIVE = False
RECURRENT = True
FASTMATH: set = set()

# ----------------------------------------------------------------- TEMPLATE BODY
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

from lstm_numba.engine.kernels.blas import blocked_gemm  # noqa: E402
from lstm_numba.engine.kernels.gemm import split  # noqa: E402
from lstm_numba.engine.kernels.microkernel import step_gemm  # noqa: E402
from lstm_numba.engine.kernels.recurrent_dropout import masked_carry, masked_recurrent_gemm  # noqa: E402
from lstm_numba.engine.kernels.views import unit_stride  # noqa: E402


@njit(inline="always")
def tile_rows(tile, n_parts, n_chunks, block_rows, batch):
    """Hidden part and row range [r0, r1) of ``tile``; chunks are runs of whole row blocks."""
    part = tile % n_parts
    chunk = tile // n_parts
    b0, b1 = split(chunk, n_chunks, (batch + block_rows - 1) // block_rows)
    return part, b0 * block_rows, min(b1 * block_rows, batch)


@njit(inline="always")
def forward_tile(s, part, r0, r1, blocks, gx, w_rec, w_packed, b_hh, p, clip, lengths, states, xh, gh_hist, y, zero_gates,
                 keep, rdrop, rdrop_rows):
    """Step ``s`` for rows [r0, r1) and the hidden units of ``part`` (see forward_rows)."""
    n_parts, depth, part_gates = w_rec.shape
    hidden = y.shape[2]
    width = hidden // n_parts
    part_state = states.shape[2] // n_parts
    part_p = p.size // n_parts
    n_slots = states.shape[0]
    src = s % n_slots
    dst = (s + 1) % n_slots
    g0 = part * part_gates
    s0 = part * part_state
    p0 = part * part_p
    u0 = part * width
    h0 = xh.shape[2] - hidden + u0  # this part's h columns in the tape
    p_part = p[p0:p0 + part_p]
    bias = b_hh[g0:g0 + part_gates]
    gx_s = gx[s % gx.shape[0]]
    gh = gh_hist[s % gh_hist.shape[0], part]
    # The GEMM reads the last ``depth`` columns of the tape row: [x_s, 1, h_{s-1}] when the
    # input projection is fused into it, h_{s-1} alone otherwise
    rec_in = xh[s, :, xh.shape[2] - depth:]
    if not RECURRENT:  # no recurrent weights (an additive gate): gx, hoisted, is the whole pre-activation
        pass
    elif rdrop.shape[0] > 0:  # recurrent dropout: one GEMM per gate block, on h_{s-1} * its mask
        if ADDITIVE:
            masked_recurrent_gemm(rec_in, rdrop, w_rec[part], gx_s[:, g0:g0 + part_gates], rdrop_rows[part], r0, r1,
                                  blocks, 1.0 if depth == hidden else 0.0)
        else:
            masked_recurrent_gemm(rec_in, rdrop, w_rec[part], gh, rdrop_rows[part], r0, r1, blocks, 0.0)
    elif ADDITIVE:  # gx (+)= rec_in @ w_rec: the tape keeps one pre-activation array (b_hh is in it already)
        step_gemm(rec_in, w_rec[part], w_packed[part], gx_s[:, g0:g0 + part_gates], r0, r1, blocks,
                  1.0 if depth == hidden else 0.0)
    else:
        step_gemm(rec_in, w_rec[part], w_packed[part], gh, r0, r1, blocks, 0.0)
    # Loops index 1-D views with the loop variable only, so that LLVM vectorises them.
    for b in range(r0, r1):
        h_next = unit_stride(xh[s + 1, b, h0:h0 + width])
        s_next = states[dst, b, s0:s0 + part_state]
        y_row = y[s, b, u0:u0 + width]
        if s < lengths[b]:
            gx_row = gx_s[b, g0:g0 + part_gates]
            if ADDITIVE:
                gh_row = zero_gates
            else:
                gh_row = gh[b]
                for j in range(part_gates):
                    gh_row[j] += bias[j]
            gate_forward(gx_row, gh_row, states[src, b, s0:s0 + part_state], p_part, clip, act, ract, s_next)
            if keep.shape[0] > 0:
                zone_out(keep[s % keep.shape[0], b, s0:s0 + part_state], states[src, b, s0:s0 + part_state], s_next)
            for j in range(width):
                h_next[j] = s_next[j]
                y_row[j] = s_next[j]
        else:
            s_prev = states[src, b, s0:s0 + part_state]
            h_prev = unit_stride(xh[s, b, h0:h0 + width])
            for j in range(part_state):
                s_next[j] = s_prev[j]
            for j in range(width):
                h_next[j] = h_prev[j]
                y_row[j] = 0.0


@njit(inline="always")
def zone_out(keep_row, s_prev, s_next):
    """Zoneout on one row's new state: s_next = keep * s_next + (1 - keep) * s_prev."""
    for j in range(s_next.size):
        s_next[j] = keep_row[j] * s_next[j] + (1.0 - keep_row[j]) * s_prev[j]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def forward_rows(gx, w_rec, w_packed, b_hh, p, clip, lengths, n_chunks, blocks, states, xh, gh_hist, y, keep, rdrop,
                 rdrop_rows):
    """Run one direction of one layer over the whole sequence, in step order, in row chunks.

    Vectors of ``k`` blocks of H (gate pre-activations, states, extra parameters) are
    *part-major*: the hidden units are split into U equal parts of W = H / U, and each
    part holds its k blocks of W contiguously. A gate applied to one part is the same gate
    with H = W. U = 1 is the plain layout.

    The recurrent GEMM multiplies the last K columns of the tape row ``xh[s]`` by
    ``w_rec``: K = H reads h_{s-1}; K = I + 1 + H reads [x_s, 1, h_{s-1}], with the input
    projection fused into the step (additive gates only).

    gx         (T_x, B, G)     the pre-activations, part-major. For an additive gate, out:
                               x_s @ W_ih^T + b_ih + b_hh + h_{s-1} @ W_hh^T, what the gate
                               saw (with K = H, in: the input projection, hoisted); T_x = T
                               keeps every step for backward, T_x = 1 (fused, inference) is
                               scratch. Otherwise, in: x_s @ W_ih^T + b_ih, T_x = T
    w_rec      (U, K, G/U)     in: one contiguous column part per hidden part of W_hh^T
                               (K = H), or of [W_ih^T; b_ih + b_hh; W_hh^T] (fused)
    w_packed   (U, P, K, PANEL) in: each part of ``w_rec`` in the microkernel's panels
                               (``kernels.microkernel.pack_panels``), or (U, 0, 0, PANEL):
                               the step GEMM then runs on BLAS (``tiling.step_kernel``)
    b_hh       (G,)            in: part-major (unused for an additive gate: it is in gx)
    p          (P,)            in: extra gate parameters, part-major
    clip       scalar          in: cell clip (inf when off)
    lengths    (B,) int64      in: valid steps per row, 1..T
    n_chunks   int             in: row chunks, each a run of whole row blocks
    blocks     3 ints          in: (rows, columns, depth) of the recurrent GEMM's blocks,
                               fixed for a given shape (``engine.Tiling``)
    states     (T_s, B, S*H)   in/out: part-major; states[0] holds the initial state. With
                               T_s = T + 1 (training) states[s] is the state before step s
                               and states[T] the final one; with T_s = 2 (inference) the
                               two slots alternate and the final state is states[T % 2].
    xh         (T + 1, B, I + 1 + H)  in/out: the tape, rows [x_s, 1, h_{s-1}]; in: the
                               [x, 1] columns of rows 0..T-1 and h_0; out: the h columns
                               of rows 1..T, in the plain layout
    gh_hist    (T_g, U, B, G/U) out: h_{s-1} @ W_hh^T + b_hh per part; T_g = T keeps every
                               step for backward, T_g = 1 keeps only scratch (always, for
                               an additive gate, which leaves it unused)
    y          (T, B, H)       out: h_s at valid steps, zeros at padded ones
    keep       (T_k, B, S*H)   in: zoneout weights of the new state, part-major: each valid
                               step's state is keep * (the gate's new state) + (1 - keep) *
                               (the state before it). T_k = T: one per step (training's
                               0/1 masks); T_k = 1: the same every step (evaluation's
                               1 - p); T_k = 0: no zoneout, the gate's state as it is
    rdrop      (K_r, B, H)     in: recurrent dropout, training's masks scaled by 1/(1 - p),
                               K_r = n_blocks: gate block k's recurrent GEMM reads
                               h_{s-1} * rdrop[k] (the same every step); K_r = 0: none
    rdrop_rows (U, B, D)       scratch (D = the GEMM depth): the masked tape rows

    The tiling with U = 1: each chunk of row blocks runs every step for its rows, so the
    pass has one parallel region and no barrier per step. Tile shapes depend on the
    problem's shape only, never on the thread count, so results are bitwise reproducible
    whatever ``NUMBA_NUM_THREADS`` is.
    """
    n_steps, batch, _ = y.shape
    zero_gates = np.zeros(gx.shape[2], dtype=gx.dtype)
    for chunk in prange(n_chunks):
        part, r0, r1 = tile_rows(chunk, 1, n_chunks, blocks[0], batch)
        for s in range(n_steps):
            forward_tile(s, part, r0, r1, blocks, gx, w_rec, w_packed, b_hh, p, clip, lengths, states, xh, gh_hist, y,
                         zero_gates, keep, rdrop, rdrop_rows)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def forward_parts(gx, w_rec, w_packed, b_hh, p, clip, lengths, n_chunks, blocks, states, xh, gh_hist, y, keep, rdrop,
                  rdrop_rows):
    """``forward_rows`` with the hidden units split into U > 1 parts (an elementwise gate).

    Buffers as in ``forward_rows``: gx (T_x, B, G), w_rec (U, K, G/U),
    w_packed (U, P, K, PANEL) or (U, 0, 0, PANEL), b_hh (G,), p (P,),
    lengths (B,), states (T_s, B, S*H), xh (T + 1, B, I + 1 + H), gh_hist (T_g, U, B, G/U),
    y (T, B, H), keep (T_k, B, S*H), rdrop (K_r, B, H), rdrop_rows (U, B, D). Each step runs one tile per part and row chunk in parallel and ends with
    a barrier, since every part's GEMM reads the whole h_{s-1}; each thread reads only its
    own part of ``w_rec``.
    """
    n_parts, _, part_gates = w_rec.shape
    n_steps, batch, _ = y.shape
    zero_gates = np.zeros(part_gates, dtype=gx.dtype)
    for s in range(n_steps):
        for tile in prange(n_parts * n_chunks):
            part, r0, r1 = tile_rows(tile, n_parts, n_chunks, blocks[0], batch)
            forward_tile(s, part, r0, r1, blocks, gx, w_rec, w_packed, b_hh, p, clip, lengths, states, xh, gh_hist, y,
                         zero_gates, keep, rdrop, rdrop_rows)


@njit(inline="always")
def backward_carry(s, part, r0, r1, blocks, w_hh, w_hh_packed, dgh, ds, rdrop, carry_rows):
    """Finish step ``s`` for rows [r0, r1) and one hidden part: ds[h part] += dgh[s] @ W_hh
    (with recurrent dropout, each gate block's share times its mask)."""
    n_parts, _, width = w_hh.shape
    s0 = part * (ds.shape[1] // n_parts)
    if rdrop.shape[0] > 0:
        masked_carry(dgh[s], rdrop, w_hh[part], ds[:, s0:s0 + width], carry_rows[part], part, r0, r1, blocks)
    else:
        step_gemm(dgh[s], w_hh[part], w_hh_packed[part], ds[:, s0:s0 + width], r0, r1, blocks, 1.0)


@njit(inline="always")
def backward_tile(s, tile, part, r0, r1, blocks, gx, w_hh, w_hh_packed, p, clip, lengths, states, gh_hist, dy, ds_pair, dgx, dgh,
                  dp_rows, zero_gates, dgh_scratch, keep, keep_scratch, rdrop, carry_rows):
    """Carry step ``s + 1`` into the state gradient, then the gate's backward of step ``s`` (none for s = -1).

    The two halves of ``ds_pair`` alternate: ``ds`` holds dLoss/d(state after step s),
    into which the gate reads, and the gate writes the direct part of dLoss/d(state before
    step s) into ``ds_prev``, which the next (earlier) step's carry completes in place.
    """
    n_steps = dgh.shape[0]
    n_parts, _, width = w_hh.shape
    part_gates = dgh.shape[2] // n_parts
    ds = ds_pair[(n_steps - 1 - s) % 2]
    ds_prev = ds_pair[(n_steps - s) % 2]
    part_state = ds.shape[1] // n_parts
    part_p = p.size // n_parts
    g0 = part * part_gates
    s0 = part * part_state
    p0 = part * part_p
    u0 = part * width
    p_part = p[p0:p0 + part_p]
    if RECURRENT and s + 1 < n_steps:
        backward_carry(s + 1, part, r0, r1, blocks, w_hh, w_hh_packed, dgh, ds, rdrop, carry_rows)
    if s < 0:
        return
    kept = keep_scratch[tile]  # bound outside the branches: a parallel loop's variable must have one type
    zoned = keep.shape[0] > 0
    for b in range(r0, r1):
        ds_row = ds[b, s0:s0 + part_state]
        ds_prev_row = ds_prev[b, s0:s0 + part_state]
        dgx_row = dgx[s, b, g0:g0 + part_gates]
        if s < lengths[b]:
            dy_row = dy[s, b, u0:u0 + width]
            for j in range(width):
                ds_row[j] += dy_row[j]
            if zoned:  # split dLoss/d(zoned state) into the gate's share and the kept state's
                keep_row = keep[s % keep.shape[0], b, s0:s0 + part_state]
                for j in range(part_state):
                    kept[j] = (1.0 - keep_row[j]) * ds_row[j]
                    ds_row[j] *= keep_row[j]
            if ADDITIVE:  # dgh is dgx: the gate writes its copy, if any, to scratch
                gh_row = zero_gates
                dgh_row = dgh_scratch[tile]
            else:
                gh_row = gh_hist[s, part, b]
                dgh_row = dgh[s, b, g0:g0 + part_gates]
            gate_backward(gx[s, b, g0:g0 + part_gates], gh_row, states[s, b, s0:s0 + part_state], p_part, clip, act,
                          ract, ds_row, dgx_row, dgh_row, ds_prev_row, dp_rows[b, p0:p0 + part_p])
            if zoned:
                for j in range(part_state):
                    ds_prev_row[j] += kept[j]
        else:
            dgh_row = dgh[s, b, g0:g0 + part_gates]
            for j in range(part_gates):
                dgh_row[j] = 0.0
                dgx_row[j] = 0.0
            for j in range(part_state):
                ds_prev_row[j] = ds_row[j]


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def backward_rows(gx, w_hh, w_hh_packed, p, clip, lengths, n_chunks, blocks, states, gh_hist, dy, ds, dgx, dgh, dp_rows,
                  dgh_scratch, keep, keep_scratch, rdrop, carry_rows):
    """Backpropagate one direction of one layer through the whole sequence, in row chunks.

    gx, p, clip, lengths, n_chunks, states, gh_hist   as in ``forward_rows`` (as training
                           left them)
    blocks   3 ints        in: (rows, columns, depth) of the recurrent GEMM's blocks
    w_hh     (U, G, W)     in: W_hh with part-major rows, one contiguous column part per
                           hidden part (W = H / U)
    w_hh_packed (U, P, G, PANEL) in: each part of ``w_hh`` in the microkernel's panels, or
                           (U, 0, 0, PANEL) for BLAS (as ``forward_rows``' ``w_packed``)
    dy       (T, B, H)     in: dLoss/dy
    ds       (2, B, S*H)   in: ds[0] = dLoss/d(final state); out: ds[T % 2] =
                           dLoss/d(initial state); part-major. The two halves alternate as
                           the state gradient after and before each step, so no step
                           copies one into the other
    dgx      (T, B, G)     out: dLoss/dgx, zeros at padded steps; part-major
    dgh      (T, B, G)     out: dLoss/dgh, the same; for an additive gate the caller passes
                           ``dgx`` itself (the two are equal)
    dp_rows  (B, P)        out: per-row dLoss/dp, part-major; the caller zero-fills it and
                           sums the rows in a fixed order, so the result does not depend
                           on the tiles
    dgh_scratch  (U * n_chunks, G/U) scratch: one row per tile, where an additive gate
                                   may write its (unused) dgh
    keep     (T_k, B, S*H) in: the zoneout weights forward ran with (T_k = 0: none)
    keep_scratch (U * n_chunks, S*H/U) scratch: one row per tile, the kept state's share
                           of the state gradient while the gate runs
    rdrop    (K_r, B, H)   in: the recurrent dropout masks forward ran with (K_r = 0: none)
    carry_rows (U, B, W)   scratch: one gate block's share of the carry

    Tiles as in ``forward_rows``. Steps run from T - 1 down to -1: each first finishes the
    step after it (adds dgh[s + 1] @ W_hh to the direct part the gate left), and s = -1
    only finishes step 0, which leaves dLoss/d(initial state) in ``ds[T % 2]``.
    """
    n_steps, batch, n_gates = gx.shape
    zero_gates = np.zeros(n_gates, dtype=gx.dtype)
    for chunk in prange(n_chunks):
        part, r0, r1 = tile_rows(chunk, 1, n_chunks, blocks[0], batch)
        for s in range(n_steps - 1, -2, -1):
            backward_tile(s, chunk, part, r0, r1, blocks, gx, w_hh, w_hh_packed, p, clip, lengths, states, gh_hist, dy, ds, dgx,
                          dgh, dp_rows, zero_gates, dgh_scratch, keep, keep_scratch, rdrop, carry_rows)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def backward_parts(gx, w_hh, w_hh_packed, p, clip, lengths, n_chunks, blocks, states, gh_hist, dy, ds, dgx, dgh, dp_rows,
                   dgh_scratch, keep, keep_scratch, rdrop, carry_rows):
    """``backward_rows`` with the hidden units split into U > 1 parts (an elementwise gate).

    Buffers as in ``backward_rows``: gx (T, B, G), w_hh (U, G, W),
    w_hh_packed (U, P, G, PANEL) or (U, 0, 0, PANEL), p (P,), lengths (B,),
    states (T + 1, B, S*H), gh_hist (T_g, U, B, G/U), dy (T, B, H), ds (2, B, S*H),
    dgx (T, B, G), dgh (T, B, G), dp_rows (B, P), dgh_scratch (U * n_chunks, G/U),
    keep (T_k, B, S*H), keep_scratch (U * n_chunks, S*H/U), rdrop (K_r, B, H), carry_rows (U, B, W).
    Finishing a step needs every part of dgh[s + 1], so each step ends with a barrier.
    """
    n_steps, batch, n_gates = gx.shape
    n_parts = w_hh.shape[0]
    zero_gates = np.zeros(n_gates // n_parts, dtype=gx.dtype)
    for s in range(n_steps - 1, -2, -1):
        for tile in prange(n_parts * n_chunks):
            part, r0, r1 = tile_rows(tile, n_parts, n_chunks, blocks[0], batch)
            backward_tile(s, tile, part, r0, r1, blocks, gx, w_hh, w_hh_packed, p, clip, lengths, states, gh_hist, dy, ds, dgx,
                          dgh, dp_rows, zero_gates, dgh_scratch, keep, keep_scratch, rdrop, carry_rows)


# ----------------------------------------------------------------- projected LSTM (proj_size)
# PyTorch's proj_size: the gate's h output, m_t (H values), is projected to h_t = m_t @ W_hr^T
# (P values), which is what the layer outputs and what the recurrent GEMM reads. The kernel
# states keep m in their h part (the gate, ``Gate.projectable``, never reads it); the tape's
# h columns are P wide. Always one hidden part (the projection reads every unit of m), in
# row chunks without a barrier per step. Separate kernels, so that a layer without a
# projection runs exactly the loops above.


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def forward_proj_rows(gx, w_rec, w_hr_t, b_hh, p, clip, lengths, n_chunks, blocks, proj_blocks, states, xh,
                      gh_hist, y):
    """``forward_rows`` for a projected layer (one hidden part).

    gx, b_hh, p, clip, lengths, n_chunks, blocks, states, gh_hist  as in ``forward_rows``
                               (U = 1; states' h part holds m, H wide)
    w_rec       (1, K, G)      W_hh^T (K = P) or, fused, [W_ih^T; b_ih + b_hh; W_hh^T]
                               (K = I + 1 + P)
    w_hr_t      (H, P)         W_hr^T
    proj_blocks 3 ints         (rows, columns, depth) blocks of the projection's GEMM
    xh          (T + 1, B, I + 1 + P)  the tape, rows [x_s, 1, h_{s-1}] with h of P values
    y           (T, B, P)      out: h_s at valid steps, zeros at padded ones
    """
    n_steps, batch, rec = y.shape
    hidden = w_hr_t.shape[0]
    n_slots = states.shape[0]
    h0 = xh.shape[2] - rec
    depth = w_rec.shape[1]
    zero_gates = np.zeros(gx.shape[2], dtype=gx.dtype)
    for chunk in prange(n_chunks):
        _, r0, r1 = tile_rows(chunk, 1, n_chunks, blocks[0], batch)
        for s in range(n_steps):
            src = s % n_slots
            dst = (s + 1) % n_slots
            gx_s = gx[s % gx.shape[0]]
            gh = gh_hist[s % gh_hist.shape[0], 0]
            rec_in = xh[s, :, xh.shape[2] - depth:]
            if ADDITIVE:
                blocked_gemm(rec_in, w_rec[0], gx_s, r0, r1, blocks[0], blocks[1], blocks[2],
                             1.0 if depth == rec else 0.0)
            else:
                blocked_gemm(rec_in, w_rec[0], gh, r0, r1, blocks[0], blocks[1], blocks[2], 0.0)
            for b in range(r0, r1):
                s_next = states[dst, b]
                if s < lengths[b]:
                    if ADDITIVE:
                        gh_row = zero_gates
                    else:
                        gh_row = gh[b]
                        for j in range(gh_row.size):
                            gh_row[j] += b_hh[j]
                    gate_forward(gx_s[b], gh_row, states[src, b], p, clip, act, ract, s_next)
                else:
                    s_prev = states[src, b]
                    for j in range(s_next.size):
                        s_next[j] = s_prev[j]
            # h_s = m_s @ W_hr^T into the tape; padded rows then keep h_{s-1}
            blocked_gemm(states[dst, :, :hidden], w_hr_t, xh[s + 1, :, h0:], r0, r1, proj_blocks[0], proj_blocks[1],
                         proj_blocks[2], 0.0)
            for b in range(r0, r1):
                h_next = unit_stride(xh[s + 1, b, h0:])
                y_row = y[s, b]
                if s < lengths[b]:
                    for j in range(rec):
                        y_row[j] = h_next[j]
                else:
                    h_prev = unit_stride(xh[s, b, h0:])
                    for j in range(rec):
                        h_next[j] = h_prev[j]
                        y_row[j] = 0.0


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def backward_proj_rows(gx, w_hh, w_hr, p, clip, lengths, n_chunks, blocks, proj_blocks, states, gh_hist, dy, ds, dh,
                       dh_hist, dgx, dgh, dp_rows, dgh_scratch):
    """``backward_rows`` for a projected layer (one hidden part).

    gx, p, clip, lengths, n_chunks, states, gh_hist, dgx, dgh, dp_rows, dgh_scratch
                            as in ``backward_rows`` (U = 1)
    w_hh      (G, P)        W_hh: the carry dL/dh_{s-1} += dgh[s] @ W_hh
    w_hr      (P, H)        W_hr: dL/dm_s = dL/dh_s @ W_hr
    blocks    3 ints        blocks of the carry's GEMM; proj_blocks, of dL/dh_s @ W_hr
    dy        (T, B, P)     in: dLoss/dy
    ds        (2, B, S*H)   in: ds[0] = dLoss/d(final state) with a zero h (m) part; out:
                            ds[T % 2] = dLoss/d(initial state), its h part unused
    dh        (2, B, P)     in: dh[0] = dLoss/d(final h); out: dh[T % 2] = dLoss/dh_0
    dh_hist   (T, B, P)     out: dLoss/dh_s at valid steps, zeros at padded ones (the
                            caller's dW_hr = sum over s of dh_s^T m_s)

    Each step: dh_s = (carried) + dy[s]; the h (m) part of ds += dh_s @ W_hr; the gate's
    backward (padded rows pass ds and dh through); then dh_{s-1} = dgh[s] @ W_hh.
    """
    n_steps, batch, n_gates = gx.shape
    hidden = w_hr.shape[1]
    rec = w_hr.shape[0]
    zero_gates = np.zeros(n_gates, dtype=gx.dtype)
    for chunk in prange(n_chunks):
        _, r0, r1 = tile_rows(chunk, 1, n_chunks, blocks[0], batch)
        for s in range(n_steps - 1, -1, -1):
            ds_cur = ds[(n_steps - 1 - s) % 2]
            ds_prev = ds[(n_steps - s) % 2]
            dh_cur = dh[(n_steps - 1 - s) % 2]
            dh_prev = dh[(n_steps - s) % 2]
            for b in range(r0, r1):
                hist = dh_hist[s, b]
                carried = dh_cur[b]
                if s < lengths[b]:
                    dy_row = dy[s, b]
                    for j in range(rec):
                        hist[j] = carried[j] + dy_row[j]
                else:
                    for j in range(rec):
                        hist[j] = 0.0
            blocked_gemm(dh_hist[s], w_hr, ds_cur[:, :hidden], r0, r1, proj_blocks[0], proj_blocks[1],
                         proj_blocks[2], 1.0)
            for b in range(r0, r1):
                ds_row = ds_cur[b]
                ds_prev_row = ds_prev[b]
                dgx_row = dgx[s, b]
                dh_prev_row = dh_prev[b]
                if s < lengths[b]:
                    if ADDITIVE:
                        gh_row = zero_gates
                        dgh_row = dgh_scratch[chunk]
                    else:
                        gh_row = gh_hist[s, 0, b]
                        dgh_row = dgh[s, b]
                    gate_backward(gx[s, b], gh_row, states[s, b], p, clip, act, ract, ds_row, dgx_row, dgh_row,
                                  ds_prev_row, dp_rows[b])
                    for j in range(rec):
                        dh_prev_row[j] = 0.0
                else:
                    dgh_row = dgh[s, b]
                    for j in range(n_gates):
                        dgh_row[j] = 0.0
                        dgx_row[j] = 0.0
                    for j in range(ds_row.size):
                        ds_prev_row[j] = ds_row[j]
                    carried = dh_cur[b]
                    for j in range(rec):
                        dh_prev_row[j] = carried[j]
            blocked_gemm(dgh[s], w_hh, dh_prev, r0, r1, blocks[0], blocks[1], blocks[2], 1.0)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def step_forward(gx, gh, s_prev, p, clip, s_next):
    """One row, one step of the gate with the bound activations (for plugin checks)."""
    gate_forward(gx, gh, s_prev, p, clip, act, ract, s_next)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def step_backward(gx, gh, s_prev, p, clip, ds_next, dgx, dgh, ds_prev, dp):
    """The gate's backward for one row and one step (for plugin checks)."""
    gate_backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp)


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def scan_coefficients(gx, clip, lengths, log_a, log_b):
    """The scan form's log coefficients of every step (``Gate.scan``).

    gx (T, B, G) input projections in step order; lengths (B,); log_a, log_b (T, B, H)
    out: log a_t and log b_t of h_t = a_t h_{t-1} + b_t; at padded steps a = 1 and b = 0
    (log b = -inf), so that the state is kept.
    """
    steps, batch = gx.shape[0], gx.shape[1]
    for task in prange(steps * batch):
        s, b = task // batch, task % batch
        row_a, row_b = log_a[s, b], log_b[s, b]
        if s < lengths[b]:
            scan_log_coefficients(gx[s, b], clip, row_a, row_b)
        else:
            for j in range(row_a.size):
                row_a[j] = 0.0
                row_b[j] = -np.inf


@njit(parallel=True, cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def scan_coefficients_backward(gx, clip, lengths, d_log_a, d_log_b, dgx):
    """dgx (T, B, G) out from d_log_a, d_log_b (T, B, H), the gradients of the log
    coefficients; gx (T, B, G) as forward saw it; zero at padded steps."""
    steps, batch = gx.shape[0], gx.shape[1]
    for task in prange(steps * batch):
        s, b = task // batch, task % batch
        row = dgx[s, b]
        if s < lengths[b]:
            scan_log_coefficients_backward(gx[s, b], clip, d_log_a[s, b], d_log_b[s, b], row)
        else:
            for j in range(row.size):
                row[j] = 0.0
