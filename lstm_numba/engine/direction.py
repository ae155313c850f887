"""Run one direction of one layer: the hoisted GEMMs (:mod:`lstm_numba.engine.kernels.gemm`)
and the time loops (the generated kernels).

Forward: ``gx = [x, 1] @ [W_ih^T; b]`` for all steps in one parallel set of GEMMs, then
the compiled time loop (or, where :func:`lstm_numba.engine.tiling.fuses_input_projection`
says so, the time loop alone, its step GEMM reading ``[x_s, 1, h_{s-1}]``). Backward: the
compiled reverse time loop, then the weight and bias gradients as one GEMM over the tape's
``[x, 1, h]`` rows (two for a gate that is not additive) and ``dx`` as another. BLAS is
held to one thread throughout (:mod:`lstm_numba.engine.blas_control`), and each pass runs on
the cores other processes leave free (:mod:`lstm_numba.engine.threads`). Every kernel call
goes through :func:`lstm_numba.engine.hooks.run`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from lstm_numba.engine import blas_control, hooks, threads, tiling
from lstm_numba.engine.kernels import arrays, gemm
from lstm_numba.engine.layout import DirectionWeights, aligned_empty


def reversal_index(lengths: np.ndarray, steps: int) -> np.ndarray:
    """Index (T, B) that reverses each row's valid steps and leaves padded steps in place.

    ``reorder(a, index)`` turns a reverse direction's time order into step order; applied
    again it turns step order back (the reordering is its own inverse).
    """
    step = np.arange(steps)[:, None]
    return np.where(step < lengths[None, :], lengths[None, :] - 1 - step, step)


def reorder(array: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``array`` (T, B, F) with row b's step s taken from step ``index[s, b]``."""
    return np.take_along_axis(array, index[:, :, None], axis=0)


@dataclass
class DirectionTape:
    """What backward needs from one direction of one layer, everything in step order.

    xh       (T + 1, B, I + 1 + H)   rows [x_s, 1, h_{s-1}]: the layer input, a one (for
                                     the bias gradients) and h before each step; row T
                                     holds the final h only. The weight gradients are
                                     then one GEMM over it: dgx^T @ xh gives
                                     [dW_ih, db, dW_hh] for an additive gate.
    gx       (T, B, G)       input projections (plus gh for an additive gate), part-major
    states   (T + 1, B, S*H) states before each step, part-major
    gh       (T_g, U, B, G/U) recurrent projections (T_g = 1, scratch, for an additive gate)
    lengths  (B,)
    order    (T, B) or None  the reversal index of a reverse direction
    keep     (T_k, B, S*H)   the zoneout weights forward ran with, part-major (T_k = 0: none)
    rdrop    (K_r, B, H)     the recurrent dropout masks forward ran with (K_r = 0: none)
    weights  the parameters forward ran with, in the kernels' layout
    """

    xh: np.ndarray
    gx: np.ndarray
    states: np.ndarray
    gh: np.ndarray
    lengths: np.ndarray
    order: np.ndarray | None
    weights: DirectionWeights
    additive: bool
    keep: np.ndarray
    rdrop: np.ndarray


@dataclass
class DirectionGrads:
    """Gradients of one direction: ``params`` by role (None where the layer has no such
    parameter), ``x`` and the initial state (a list of S arrays, as ``state0``)."""

    w_ih: np.ndarray
    w_hh: np.ndarray | None
    b_ih: np.ndarray
    b_hh: np.ndarray | None
    extra: np.ndarray
    x: np.ndarray
    state: list
    w_hr: np.ndarray | None = None


@threads.adaptive
def forward_direction(kernels, workspace, x, w_ih, w_hh, b_ih, b_hh, extra, clip, lengths, reverse, state0,
                      keep_tape, start=0, weight_cache=None, keep_states=False, w_hr=None, zoneout=None,
                      recurrent_dropout=None):
    """Run one direction of ``kernels.gate`` over ``x`` (T, B, I) from ``state0``, a list of
    the S state vectors (B, H) each (h is (B, R) for a projected layer).

    ``zoneout`` (T_k, B, S, H), or None for none, weights each valid step's new state
    against the one before it: state = zoneout * new + (1 - zoneout) * previous, with
    T_k = T (one per step, in x's time order) or T_k = 1 (the same every step). Not with
    ``w_hr``. ``recurrent_dropout`` (n_blocks, B, H), or None, are the masks (scaled by
    1 / (1 - p)) of h_{t-1} in each gate block's recurrent GEMM, the same every step (Keras's
    ``recurrent_dropout``). Not with ``w_hr``.

    ``w_hh`` is None for a gate without recurrent weights (``Gate.recurrent`` false);
    ``w_hr`` (R, H) projects the gate's h output to R = proj_size values (PyTorch's
    ``proj_size``; then ``w_hh`` is (G, R)). ``start`` is the index of x's first step in its
    whole sequence (a later chunk of a stream, ``LSTM.step``): the hoisted input projection
    runs in tasks of whole steps counted from step 0 of the sequence
    (``tiling.projection_blocks``), so a chunk's steps get the bits they get in a forward
    over the whole sequence. The tape's arrays come from ``workspace``.

    Returns ``y`` (T, B, H) ((T, B, R) projected), the final state (a list as ``state0``), a
    :class:`DirectionTape` (or None when ``keep_tape`` is false) and, with ``keep_states``,
    each state vector after every step (a list of (T, B, H) arrays, h first) in x's time
    order, zeros at padded steps (else None). ``weight_cache``: a
    :class:`lstm_numba.engine.layout.WeightCache` that keeps the weights' layout between
    calls while they keep their values (a stream's short calls).
    """
    gate = kernels.gate
    steps, batch, inputs = x.shape
    n_gates = w_ih.shape[0]
    hidden = n_gates // gate.n_blocks
    rec = hidden if w_hr is None else w_hr.shape[0]  # the width of h: the tape's h columns, y
    dtype = x.dtype
    tile = tiling.choose_tiling(gate.elementwise, gate.additive, batch, inputs, hidden, n_gates, dtype.itemsize,
                                gate.recurrent, 0 if w_hr is None else rec)
    params = (w_ih, w_hh, b_ih, b_hh, extra) + (() if w_hr is None else (w_hr,))
    weights = (weight_cache.get(tile, hidden, params, gate.additive) if weight_cache is not None
               else DirectionWeights.prepare(tile, hidden, *params[:5], gate.additive, *params[5:]))
    order = reversal_index(lengths, steps) if reverse else None
    n_state = len(state0)
    n_slots = steps + 1 if keep_tape or keep_states else 2
    projection = None if tile.fused_input else tiling.projection_blocks(
        batch, n_gates, inputs + 1, dtype.itemsize, blas_control.small_kernel_available())
    # The projection's tasks start at whole multiples of its steps from the sequence's
    # start: x's rows sit ``lead`` steps into the first, and the last is padded
    lead = start % projection.steps if projection else 0
    padded = -(-(lead + steps) // projection.steps) * projection.steps if projection else steps
    xh_all = workspace.array("xh", (max(lead + steps + 1, padded), batch, inputs + 1 + rec), dtype)
    xh = xh_all[lead:lead + steps + 1]
    arrays.fill_inputs(np.ascontiguousarray(x), order if reverse else arrays.IN_ORDER, xh)
    xh[0, :, inputs + 1:] = state0[0]
    if projection:  # the padding rows' results are never read: zeros keep them cheap and finite
        xh_all[:lead, :, :inputs + 1] = 0
        xh_all[lead + steps:padded, :, :inputs + 1] = 0
    # A fused projection needs no gx beyond the step at hand unless backward reads it
    gx_all = workspace.array("gx", (1 if tile.fused_input and not keep_tape else padded, batch, n_gates), dtype)
    gx = gx_all[lead:lead + steps] if projection else gx_all
    states = workspace.array("states", (n_slots, batch, n_state * hidden), dtype)
    # a projected layer's kernel states hold the gate's unprojected h output, m, in their h part
    kernel_state0 = state0 if w_hr is None else [np.zeros((batch, hidden), dtype), *state0[1:]]
    states[0] = weights.state_to_kernel(np.stack(kernel_state0))
    gh_steps = steps if keep_tape and not gate.additive else 1
    gh = workspace.array("gh", (gh_steps, tile.parts, batch, n_gates // tile.parts), dtype)
    y = aligned_empty((steps, batch, rec), dtype)
    keep = _keep_to_kernel(zoneout, order, n_state, batch, hidden, tile.parts, dtype)
    rdrop, rdrop_rows = _recurrent_dropout_buffers(workspace, recurrent_dropout, batch, hidden, weights.w_rec, dtype)
    with blas_control.blas_single_thread():
        if projection:
            rows = padded * batch
            hooks.run("input_projection", gemm.input_projection, xh_all[:padded].reshape(rows, -1)[:, :inputs + 1],
                      weights.w_proj, gx_all.reshape(rows, n_gates), projection.steps * batch, projection.blocks)
        if w_hr is not None:
            hooks.run("forward_proj_rows", kernels.forward_proj_rows, gx, weights.w_rec, weights.w_hr_t,
                      weights.b_hh, weights.extra, dtype.type(clip), lengths, tile.chunks, tile.forward_blocks,
                      tile.project_blocks, states, xh, gh, y)
        else:
            forward_loop = "forward_parts" if tile.parts > 1 else "forward_rows"
            hooks.run(forward_loop, getattr(kernels, forward_loop), gx, weights.w_rec, weights.w_packed, weights.b_hh,
                      weights.extra, dtype.type(clip), lengths, tile.chunks, tile.forward_blocks, states, xh, gh, y, keep,
                      rdrop, rdrop_rows)
    final = list(weights.state_from_kernel(states[steps % n_slots], n_state))
    if w_hr is not None:  # h after each row's last valid step: the tape's last row carries it
        final[0] = xh[steps, :, inputs + 1:].copy()
    tape = DirectionTape(xh, gx, states, gh, lengths, order, weights, gate.additive, keep, rdrop) if keep_tape else None
    y = reorder(y, order) if reverse else y
    every = None
    if keep_states:
        every = _every_state(states[1:steps + 1], n_state, tile.parts, lengths, order)
        if w_hr is not None:
            every[0] = y.copy()  # h, projected: y itself (the kernel states hold m)
    return y, final, tape, every


def _keep_to_kernel(zoneout, order, n_state, batch, hidden, parts, dtype):
    """Zoneout weights (T_k, B, S, H) in time order -> (T_k, B, S*H) part-major in step
    order (``order``: a reverse direction's reversal index); None -> (0, B, S*H)."""
    if zoneout is None:
        return np.zeros((0, batch, n_state * hidden), dtype)
    steps = zoneout.shape[0]
    keep = np.broadcast_to(np.asarray(zoneout, dtype), (steps, batch, n_state, hidden))
    keep = keep.reshape(steps, batch, n_state, parts, hidden // parts).transpose(0, 1, 3, 2, 4)
    keep = keep.reshape(steps, batch, -1)
    return np.ascontiguousarray(keep if order is None or steps == 1 else reorder(keep, order))


def _recurrent_dropout_buffers(workspace, masks, batch, hidden, w_rec, dtype):
    """The kernels' recurrent dropout masks (n_blocks, B, H) and their masked-row scratch
    (U, B, GEMM depth); empty arrays (the kernels' plain GEMMs) when ``masks`` is None."""
    if masks is None:
        return np.zeros((0, batch, hidden), dtype), np.zeros((w_rec.shape[0], 0, 0), dtype)
    rows = workspace.array("rdrop_rows", (w_rec.shape[0], batch, w_rec.shape[1]), dtype)
    return np.ascontiguousarray(masks, dtype), rows


def _every_state(states, n_state, parts, lengths, order):
    """The kernels' states after each step (T, B, S*H), part-major and in step order, as a
    list of S arrays (T, B, H) in the sequence's time order, zeros at padded steps (as ``y``)."""
    steps, batch, _ = states.shape
    width = states.shape[2] // (n_state * parts)
    every = np.ascontiguousarray(states.reshape(steps, batch, parts, n_state, width).transpose(3, 0, 1, 2, 4)
                                 .reshape(n_state, steps, batch, parts * width))
    every[:, np.arange(steps)[:, None] >= lengths[None, :]] = 0
    if order is not None:
        every = np.take_along_axis(every, order[None, :, :, None], axis=1)
    return list(every)


@threads.adaptive
def backward_direction(kernels, workspace, tape: DirectionTape, clip, dy, dstate) -> DirectionGrads:
    """Backpropagate ``dy`` (T, B, H) ((T, B, R) projected) and ``dstate`` (a list of the S
    state vectors' gradients, shaped as the state) through one direction."""
    steps, batch, n_gates = tape.gx.shape
    rows = steps * batch
    dtype = tape.gx.dtype
    weights = tape.weights
    tile = weights.tiling
    n_state, hidden = len(dstate), weights.hidden
    projected = weights.w_hr is not None
    inputs = weights.w_ih.shape[1]
    dy = np.ascontiguousarray(dy) if tape.order is None else reorder(dy, tape.order)
    ds = workspace.array("ds", (2, batch, n_state * hidden), dtype)  # the state gradients after and before a step
    kernel_dstate = dstate if not projected else [np.zeros((batch, hidden), dtype), *dstate[1:]]
    ds[0] = weights.state_to_kernel(np.stack(kernel_dstate))
    dgx = workspace.array("dgx", tape.gx.shape, dtype)
    dgh = dgx if tape.additive else workspace.array("dgh", tape.gx.shape, dtype)
    dp_rows = workspace.array("dp_rows", (batch, weights.extra.size), dtype)
    dp_rows.fill(0)
    dgh_rows = workspace.array("dgh_rows", (tile.parts * tile.chunks, n_gates // tile.parts), dtype)  # additive dgh
    x_grad = np.empty((steps, batch, inputs), dtype)
    xh2 = tape.xh[:steps].reshape(rows, -1)
    w_hr_grad = None
    with blas_control.blas_single_thread():
        if projected:
            rec = weights.w_hr.shape[0]
            dh = workspace.array("dh", (2, batch, rec), dtype)  # dLoss/dh after and before a step
            dh[0] = dstate[0]
            dh_hist = workspace.array("dh_hist", (steps, batch, rec), dtype)
            hooks.run("backward_proj_rows", kernels.backward_proj_rows, tape.gx, weights.hidden_parts_of_w_hh()[0],
                      weights.w_hr, weights.extra, dtype.type(clip), tape.lengths, tile.chunks, tile.backward_blocks,
                      tile.unproject_blocks, tape.states, tape.gh, dy, ds, dh, dh_hist, dgx, dgh, dp_rows, dgh_rows)
            # dW_hr = sum over steps of dh_s^T m_s, m_s the h part of the state after step s
            m2 = tape.states[1:steps + 1].reshape(rows, -1)[:, :hidden]
            w_hr_grad = aligned_empty((rec, hidden), dtype)
            slabs = workspace.array("slabs_w_hr", (tiling.reduction_parts(rows), rec, hidden), dtype)
            hooks.run("weight_gradients", gemm.weight_gradients, dh_hist.reshape(rows, rec), m2, w_hr_grad, slabs,
                      np.arange(rec))
        else:
            backward_loop = "backward_parts" if tile.parts > 1 else "backward_rows"
            w_hh_parts = weights.hidden_parts_of_w_hh()
            hooks.run(backward_loop, getattr(kernels, backward_loop), tape.gx, w_hh_parts,
                      weights.packed_hidden_parts_of_w_hh(w_hh_parts), weights.extra, dtype.type(clip), tape.lengths,
                      tile.chunks, tile.backward_blocks, tape.states, tape.gh, dy, ds, dgx, dgh, dp_rows, dgh_rows,
                      tape.keep,
                      workspace.array("keep_rows", (tile.parts * tile.chunks, n_state * hidden // tile.parts), dtype),
                      tape.rdrop, workspace.array("carry_rows", (tile.parts, batch, hidden // tile.parts), dtype))
        dgx2 = dgx.reshape(rows, n_gates)
        # Rows in PyTorch's order; the weight gradients are column views of these.
        if weights.w_hh is None:  # no recurrent weights (an additive gate): [dW_ih, db] from [x, 1]
            grads = _weight_gradients(workspace, "w", dgx2, xh2[:, :inputs + 1], weights)
            w_ih_grad, b_ih_grad = grads[:, :inputs], grads[:, inputs]
            w_hh_grad = b_hh_grad = None
        elif tape.rdrop.shape[0]:  # recurrent dropout: dW_hh block by block, from h * the block's mask
            grads_x = _weight_gradients(workspace, "w_ih", dgx2, xh2[:, :inputs + 1], weights)
            w_ih_grad, b_ih_grad = grads_x[:, :inputs], grads_x[:, inputs]
            b_hh_grad = (b_ih_grad.copy() if tape.additive else
                         _weight_gradients(workspace, "b_hh", dgh.reshape(rows, n_gates), xh2[:, inputs:inputs + 1],
                                           weights)[:, 0])
            w_hh_grad = _masked_w_hh_gradient(workspace, dgh.reshape(rows, n_gates), xh2[:, inputs + 1:], tape.rdrop,
                                              weights)
        elif tape.additive:  # dgx == dgh: one GEMM gives [dW_ih, db, dW_hh]
            grads = _weight_gradients(workspace, "w", dgx2, xh2, weights)
            w_ih_grad, b_ih_grad, w_hh_grad = grads[:, :inputs], grads[:, inputs], grads[:, inputs + 1:]
            b_hh_grad = b_ih_grad.copy()
        else:  # [dW_ih, db_ih] from [x, 1] and [db_hh, dW_hh] from [1, h]
            grads_x = _weight_gradients(workspace, "w_ih", dgx2, xh2[:, :inputs + 1], weights)
            grads_h = _weight_gradients(workspace, "w_hh", dgh.reshape(rows, n_gates), xh2[:, inputs:], weights)
            w_ih_grad, b_ih_grad = grads_x[:, :inputs], grads_x[:, inputs]
            b_hh_grad, w_hh_grad = grads_h[:, 0], grads_h[:, 1:]
        blocks = tiling.hoisted_gemm_blocks(rows, inputs, n_gates, dtype.itemsize, blas_control.small_kernel_available())
        hooks.run("input_gradient", gemm.input_gradient, dgx2, weights.w_ih, x_grad.reshape(rows, -1), blocks)
    state_grad = list(weights.state_from_kernel(ds[steps % 2], n_state))
    if projected:
        state_grad[0] = dh[steps % 2].copy()
    return DirectionGrads(
        w_ih=w_ih_grad, w_hh=w_hh_grad, b_ih=np.ascontiguousarray(b_ih_grad),
        b_hh=None if b_hh_grad is None else np.ascontiguousarray(b_hh_grad),
        extra=weights.to_natural(dp_rows.sum(axis=0)), x=x_grad if tape.order is None else reorder(x_grad, tape.order),
        state=state_grad, w_hr=w_hr_grad,
    )


def _masked_w_hh_gradient(workspace, dgh2, h2, masks, weights: DirectionWeights) -> np.ndarray:
    """dW_hh (G, H) in PyTorch's row order under recurrent dropout: block k's rows are
    dgh_k^T @ (h * mask_k), dgh2 (T*B, G) part-major, h2 (T*B, H) the tape's h_{t-1}, masks
    (n_blocks, B, H)."""
    n_blocks, batch, hidden = masks.shape
    rows, n_gates = dgh2.shape
    natural = weights.natural_rows()
    out = aligned_empty((n_gates, hidden), dgh2.dtype)
    slabs = workspace.array("slabs_w_hh_masked", (tiling.reduction_parts(rows), hidden, hidden), dgh2.dtype)
    for k in range(n_blocks):
        columns = np.argsort(natural)[k * hidden:(k + 1) * hidden]  # block k's gates, in natural order
        masked_h = (h2.reshape(rows // batch, batch, hidden) * masks[k]).reshape(rows, hidden)
        hooks.run("weight_gradients", gemm.weight_gradients, np.ascontiguousarray(dgh2[:, columns]), masked_h,
                  out[k * hidden:(k + 1) * hidden], slabs, np.arange(hidden))
    return out


def _weight_gradients(workspace, role, dg2, inputs2, weights: DirectionWeights) -> np.ndarray:
    """dg2^T @ inputs2 with its rows in PyTorch's gate order, a new (G, K) array.

    Through ``gemm.weight_gradients_blocked`` where ``tiling.weight_gradient_blocks`` says
    its small-matrix blocks win (then reordered, when the tiling has hidden parts), else
    ``gemm.weight_gradients``, which puts the rows in place as it sums its slabs.
    """
    rows, n_gates = dg2.shape
    depth = inputs2.shape[1]
    out = aligned_empty((n_gates, depth), dg2.dtype)
    blocks = tiling.weight_gradient_blocks(n_gates, depth, blas_control.small_kernel_available())
    if blocks is not None:
        hooks.run("weight_gradients_blocked", gemm.weight_gradients_blocked, dg2, inputs2, out, *blocks, numba.get_num_threads())
        return weights.to_natural(out)
    slabs = workspace.array(f"slabs_{role}", (tiling.reduction_parts(rows), n_gates, depth), dg2.dtype)
    hooks.run("weight_gradients", gemm.weight_gradients, dg2, inputs2, out, slabs, weights.natural_rows())
    return out
