"""``profile()``: the whole report of one layer stack (compile, phases, GFLOP/s, torch), and
its text form.
"""

from __future__ import annotations

import time

import numpy as np

from lstm_numba.profiling.compile_time import measure_compile
from lstm_numba.profiling.flops import fused_input_flops, gflops_of, model_flops
from lstm_numba.profiling.machine import (
    blas_info,
    blas_peak_gflops,
    engine_limiter_gaps,
    env_settings,
    threads_info,
)
from lstm_numba.profiling.phases import PHASE_LABELS, PHASES, phase_breakdown
from lstm_numba.profiling.timing import median_ms, time_calls
from lstm_numba.profiling.torch_compare import profile_torch


def model_from_checkpoint(path) -> tuple:
    """The recurrent layers of an ``lstm-numba train`` checkpoint, with its weights.

    Returns ``(layer, info)``; ``info`` holds the task and the sequence length and batch
    size it was trained with (``seq_len`` is None for classification, whose length comes
    from the data). Raises ``CheckpointError`` naming the file (including a missing
    plugin).
    """
    from lstm_numba.training.trainer import load_trained

    trained = load_trained(path)
    return trained.model.rnn, {"task": trained.task, "seq_len": trained.config.window,
                               "batch_size": trained.config.batch_size}


def profile(model, steps: int, batch: int, repeat: int = 5, *, compile: bool = True, torch: bool = True,
            seed: int = 0) -> dict:
    """Profile ``model`` (an :class:`lstm_numba.LSTM`) on random ``(steps, batch, I)`` input.

    Returns a JSON-able dict; see the module docstring for the phases. ``compile`` runs the
    two compile subprocesses (about 10 s cold), ``torch`` the comparison with
    ``torch.nn.LSTM``/``GRU`` when installed and the gate has an equivalent.
    """
    notes = []
    config = model.config()
    rng = np.random.default_rng(seed)
    dtype = model.dtype
    x = rng.standard_normal((steps, batch, model.input_size)).astype(dtype)
    dy = rng.standard_normal((steps, batch, model.num_directions * model.output_size)).astype(dtype)
    x_user = np.ascontiguousarray(x.transpose(1, 0, 2)) if model.batch_first else x
    dy_user = np.ascontiguousarray(dy.transpose(1, 0, 2)) if model.batch_first else dy

    result = {
        "config": dict(config, steps=steps, batch=batch, repeat=repeat),
        "env": env_settings(),
    }

    if compile:
        comp = measure_compile(config)
        result["compile"] = comp
        result["compile_cold_s"] = comp["cold"]["first_call_s"]
        result["compile_cached_s"] = comp["cached"]["first_call_s"]
    else:
        result["compile"] = None
        result["compile_cold_s"] = result["compile_cached_s"] = None

    # First call in this process (user cache: a compile or a cache load), then warm-up.
    model.train()
    start = time.perf_counter()
    model.forward(x_user, need_grad=True)
    model.backward(dy_user)
    result["first_call_this_process_s"] = time.perf_counter() - start

    breakdown = phase_breakdown(model, x_user, dy_user, repeat)
    notes.extend(breakdown["notes"])
    phases_ms = breakdown["phases_ms"]
    forward_ms, backward_ms = breakdown["forward_ms"], breakdown["backward_ms"]
    fb_ms, iteration_ms = breakdown["forward_backward_ms"], breakdown["iteration_ms"]
    inference_ms = median_ms(time_calls(lambda: model.forward(x_user, need_grad=False), repeat))

    input_flops, recurrent_flops = model_flops(model, steps, batch)
    fused_flops = fused_input_flops(model, steps, batch)
    if fused_flops:
        notes.append(f"{fused_flops / input_flops:.0%} of the input projection runs inside the forward kernel "
                     "(fused into the time loop's GEMM) and is counted there")
    fflops = input_flops + recurrent_flops
    phase_flops = {"input_gemm": input_flops - fused_flops, "forward_kernel": recurrent_flops + fused_flops,
                   "backward_kernel": recurrent_flops, "backward_gemms": fflops + input_flops}
    threads = threads_info()
    result["step_kernels"] = step_kernels(model, batch)
    peak = blas_peak_gflops(dtype, threads["numba"])
    gflops = {"inference": gflops_of(fflops, inference_ms), "forward": gflops_of(fflops, forward_ms),
              "forward_backward": gflops_of(3 * fflops, fb_ms)}
    result.update({
        "phases_ms": phases_ms,
        "phase_gflops": {p: (gflops_of(f, phases_ms[p]) if phases_ms[p] > 0 else None)
                         for p, f in phase_flops.items()},
        "forward_ms": forward_ms,
        "backward_ms": backward_ms,
        "forward_backward_ms": fb_ms,
        "optimizer_ms": phases_ms["optimizer"],
        "iteration_ms": iteration_ms,
        "inference_ms": inference_ms,
        "forward_gflop": fflops / 1e9,
        "gflops": gflops,
        "peak_gflops": peak,
        "percent_of_peak": {k: (100.0 * v / peak if v else None) for k, v in gflops.items()},
        "threads": threads,
        "blas": blas_info(),
    })
    gaps = engine_limiter_gaps()
    result["blas_not_held_by_engine"] = gaps
    if gaps:
        notes.append("the engine's one-thread BLAS limiter does not cover " + ", ".join(gaps)
                     + " (loaded after the limiter was built): kernels may run a multithreaded BLAS "
                     "inside their parallel loop")

    result["torch"] = profile_torch(model, x_user, dy_user, x, dy, repeat) if torch else \
        {"available": False, "note": "skipped (--no-torch)"}
    result["notes"] = notes
    return result


def step_kernels(model, batch: int) -> list[str]:
    """For each layer, which kernel each time loop's step GEMM runs and why
    (:func:`lstm_numba.engine.tiling.describe_step_kernels`)."""
    from lstm_numba.engine import tiling

    gate, lines = model.gate, []
    for key, value in model.params.items():
        if not key.startswith("weight_ih") or key.endswith("_reverse"):
            continue
        layer = key[len("weight_ih"):]
        if model.proj_size:
            lines.append(f"layer{layer}: BLAS (a projected layer's kernels run their GEMMs on BLAS)")
            continue
        n_gates, inputs = value.shape
        loops = tiling.describe_step_kernels(gate.elementwise, gate.additive, batch, inputs, model.hidden_size,
                                             n_gates, model.dtype.itemsize, gate.recurrent)
        lines += [f"layer{layer} {loop}: {text}" for loop, text in loops.items()]
    return lines


def _fmt(value, spec=".2f", missing="-"):
    return missing if value is None else format(value, spec)


def format_report(result: dict) -> str:
    """The human-readable table printed by ``lstm-numba profile``."""
    cfg = result["config"]
    lines = []
    dirs = " bidirectional" if cfg.get("bidirectional") else ""
    lines.append(f"lstm-numba profile: gate={cfg['gate']} dtype={cfg['dtype']} T={cfg['steps']} B={cfg['batch']} "
                 f"I={cfg['input_size']} H={cfg['hidden_size']} layers={cfg['num_layers']}{dirs} "
                 f"repeat={cfg['repeat']}")
    th = result["threads"]
    lines.append(f"threads: numba {th['numba']} ({th.get('numba_threading_layer') or '?'} layer)"
                 + (f", torch {th['torch']}" if "torch" in th else "") + f", {th['cpus']} CPUs")
    if "passes" in th:
        lines.append(f"direction passes: {th['passes']} thread(s) ({th['passes_why']})")
    for line in result.get("step_kernels", []):
        lines.append(f"step GEMM {line}")
    env = ", ".join(f"{k}={v}" for k, v in result["env"].items() if v is not None) or "none set"
    lines.append(f"env: {env}")
    for row in result["blas"]:
        if row["user_api"] == "blas":
            lines.append(f"blas: {row['owner']:<6} {row['internal_api']} {row['version']} "
                         f"kernel={row['architecture']} threads={row['num_threads']}")
    lines.append("")
    lines.append(f"{'phase':<42}{'ms/iter':>10}{'share':>8}{'GFLOP/s':>10}")
    lines.append("-" * 70)
    comp = result.get("compile")
    if comp:
        for key, label in (("cold", "compile, cold (fresh cache, subprocess)"),
                           ("cached", "compile, cached (2nd process, first call)")):
            lines.append(f"{label:<42}{1e3 * comp[key]['first_call_s']:>10.1f}{'':>8}{'':>10}")
    total = sum(result["phases_ms"].values())
    for phase in PHASES:
        ms = result["phases_ms"][phase]
        share = f"{100 * ms / total:.0f}%" if total else "-"
        lines.append(f"{PHASE_LABELS[phase]:<42}{ms:>10.2f}{share:>8}"
                     f"{_fmt(result['phase_gflops'].get(phase), '.1f'):>10}")
    lines.append("-" * 70)
    lines.append(f"{'forward (public API, training)':<42}{result['forward_ms']:>10.2f}{'':>8}"
                 f"{_fmt(result['gflops']['forward'], '.1f'):>10}")
    lines.append(f"{'backward (public API)':<42}{result['backward_ms']:>10.2f}")
    lines.append(f"{'forward+backward':<42}{result['forward_backward_ms']:>10.2f}{'':>8}"
                 f"{_fmt(result['gflops']['forward_backward'], '.1f'):>10}")
    lines.append(f"{'iteration (fwd + bwd + Adam)':<42}{result['iteration_ms']:>10.2f}")
    lines.append(f"{'inference forward (no tape)':<42}{result['inference_ms']:>10.2f}{'':>8}"
                 f"{_fmt(result['gflops']['inference'], '.1f'):>10}")
    lines.append("")
    pct = result["percent_of_peak"]
    lines.append(f"peak {cfg['dtype']} matmul ({th['numba']} threads): {result['peak_gflops']:.1f} GFLOP/s; "
                 f"forward+backward at {_fmt(pct['forward_backward'], '.0f')}%, "
                 f"inference at {_fmt(pct['inference'], '.0f')}% of it")
    if comp:
        lines.append(f"first call in a fresh process: cold {comp['cold']['first_call_s']:.2f} s, cached "
                     f"{comp['cached']['first_call_s']:.3f} s (import {comp['cached']['import_s']:.2f} s, "
                     f"process {comp['cached']['process_s']:.2f} s)")
    tr = result["torch"]
    if tr.get("available"):
        lines.append(f"torch {tr['version']} nn.{tr['module']} ({tr['threads']} threads), timed in alternating "
                     f"blocks with ours: forward+backward {tr['forward_backward_ms']:.2f} ms against our "
                     f"{tr['ours_forward_backward_ms']:.2f} (ratio {tr['ratio_forward_backward']:.2f}), inference "
                     f"{tr['inference_ms']:.2f} ms against our {tr['ours_inference_ms']:.2f} (ratio "
                     f"{tr['ratio_inference']:.2f}); ratio = torch/ours, >1 means lstm-numba is faster; "
                     f"max |y - y_torch| = {tr['max_abs_diff_forward']:.1e}")
    else:
        lines.append(f"torch: {tr['note']}")
    for note in result.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
