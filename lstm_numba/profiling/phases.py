"""Per-phase timing of a training iteration through the engine's hook (see the package
docstring for the phases).
"""

from __future__ import annotations

import contextlib
import time

from lstm_numba.engine import hooks
from lstm_numba.profiling.flops import fused_input_flops, model_flops
from lstm_numba.profiling.timing import median_ms

#: Phase keys of :func:`profile` results, in table order (milliseconds per iteration).
PHASES = ("input_gemm", "forward_kernel", "forward_other", "backward_kernel", "backward_gemms",
          "backward_other", "optimizer")


PHASE_LABELS = {
    "input_gemm": "input GEMM (x @ W_ih^T + b)",
    "forward_kernel": "forward kernel (recurrent loop)",
    "forward_other": "forward, outside kernels (alloc, numpy)",
    "backward_kernel": "backward kernel (reverse loop)",
    "backward_gemms": "backward GEMMs (dW_ih, dW_hh, db, dx)",
    "backward_other": "backward, outside kernels (alloc, zero)",
    "optimizer": "optimizer step (Adam)",
}


#: Kernel-module function -> phase. Time spent in a pass outside these calls (NumPy work,
#: allocation, zero-fills, copies, Python) is the pass's ``*_other`` phase.
KERNEL_PHASES = {
    "input_projection": "input_gemm",
    "forward_rows": "forward_kernel",
    "forward_parts": "forward_kernel",
    "forward_proj_rows": "forward_kernel",
    "backward_rows": "backward_kernel",
    "backward_parts": "backward_kernel",
    "backward_proj_rows": "backward_kernel",
    "weight_gradients": "backward_gemms",
    "weight_gradients_blocked": "backward_gemms",
    "input_gradient": "backward_gemms",
}


@contextlib.contextmanager
def _timing_kernels(totals: dict):
    """Add each engine kernel call's seconds to ``totals[phase]`` (:data:`KERNEL_PHASES`)
    while the public API runs, through the engine's observer hook
    (:func:`lstm_numba.engine.hooks.observe`)."""

    def record(name: str, seconds: float) -> None:
        phase = KERNEL_PHASES.get(name)
        if phase is not None:
            totals[phase] = totals.get(phase, 0.0) + seconds

    with hooks.observe(record):
        yield


def _timed_iteration(model, x, dy, optimizer) -> dict:
    """One training iteration through the public API; seconds per phase and per pass."""
    totals: dict = {}
    with _timing_kernels(totals):
        t0 = time.perf_counter()
        model.forward(x, need_grad=True)
        t1 = time.perf_counter()
        fwd_kernels = dict(totals)
        grads = model.backward(dy)
        t2 = time.perf_counter()
    optimizer.step(grads.params)
    t3 = time.perf_counter()
    phases = dict.fromkeys(PHASES, 0.0)
    phases.update(totals)
    phases["forward_other"] = (t1 - t0) - sum(fwd_kernels.values())
    phases["backward_other"] = (t2 - t1) - sum(v - fwd_kernels.get(k, 0.0) for k, v in totals.items())
    phases["optimizer"] = t3 - t2
    return {"phases": phases, "forward": t1 - t0, "backward": t2 - t1, "iteration": t3 - t0,
            "seen": set(totals)}


def phase_breakdown(model, x, dy, repeat: int = 5, optimizer=None) -> dict:
    """Median milliseconds per phase of ``repeat`` training iterations (after one warm-up).

    ``x`` and ``dy`` are shaped as the layer's ``forward`` and ``backward`` take them.
    Returns ``phases_ms`` (keys :data:`PHASES`), ``forward_ms``, ``backward_ms``,
    ``forward_backward_ms``, ``iteration_ms`` and ``notes``. The optimizer (an
    :class:`lstm_numba.training.optim.Adam` with a tiny learning rate by default) updates the weights.
    """
    from lstm_numba.training.optim import Adam

    notes = []
    model.train()
    optimizer = optimizer or Adam(model.params, lr=1e-6)
    warm = _timed_iteration(model, x, dy, optimizer)
    steps, batch = (x.shape[1], x.shape[0]) if model.batch_first else x.shape[:2]
    input_flops, _ = model_flops(model, steps, batch)
    hoisted = input_flops > fused_input_flops(model, steps, batch)
    missing = [p for p in ("input_gemm", "forward_kernel", "backward_kernel", "backward_gemms")
               if p not in warm["seen"] and (hoisted or p != "input_gemm")]
    if missing:
        notes.append(f"no kernel call was seen for {', '.join(missing)} (the engine changed how it calls "
                     "its kernels?): that work is counted under 'outside kernels'")
    if model.dropout:
        notes.append(f"dropout={model.dropout} runs in the training forward and is included in the times")
    runs = [_timed_iteration(model, x, dy, optimizer) for _ in range(repeat)]
    return {
        "phases_ms": {phase: median_ms([r["phases"][phase] for r in runs]) for phase in PHASES},
        "forward_ms": median_ms([r["forward"] for r in runs]),
        "backward_ms": median_ms([r["backward"] for r in runs]),
        "forward_backward_ms": median_ms([r["forward"] + r["backward"] for r in runs]),
        "iteration_ms": median_ms([r["iteration"] for r in runs]),
        "notes": notes,
    }
