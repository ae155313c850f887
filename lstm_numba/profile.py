"""Where the time goes: per-phase timing of one layer stack, for ``lstm-numba profile``
and ``benchmarks/bench_lstm.py``.

Phases of one training iteration (all times are medians over ``repeat`` iterations):

- ``compile_cold`` / ``compile_cached``: first forward + backward call in a fresh process,
  once with an empty kernel cache directory and once more with the cache it filled
  (subprocesses, so the measuring process's own state does not leak in);
- ``input_gemm``: the ``input_projection`` kernel, ``x @ W_ih^T + b_ih`` over all steps
  (zero for a layer whose projection the engine fuses into the time loop,
  :func:`lstm_numba.engine.fuses_input_projection`);
- ``forward_kernel``: ``forward_rows`` or ``forward_parts``, the compiled time loop
  (recurrent GEMMs, fused input projections, gates);
- ``forward_other``: the rest of ``forward`` (allocation, copies, NumPy, Python);
- ``backward_kernel``: ``backward_rows`` or ``backward_parts``, the compiled reverse time
  loop;
- ``backward_gemms``: ``weight_gradients`` (or ``weight_gradients_blocked``) and
  ``input_gradient`` (dW_ih, dW_hh, db, dx);
- ``backward_other``: the rest of ``backward`` (zero-fills, copies, NumPy, Python);
- ``optimizer``: one :class:`lstm_numba.optim.Adam` step on the layer's parameters.

Nothing is timed inside the engine: the profiler hands the layer a stand-in for its
generated kernel module, and the engine a stand-in for its shared GEMM kernel module
(:data:`ENGINE_KERNEL_MODULES`), that time each call of a known kernel
(:data:`KERNEL_PHASES`), and runs the public ``forward``/``backward``. A pass's time outside those calls is its
``*_other`` phase, so the phases add up to the iteration. If the engine computes a phase
in NumPy instead of a kernel, that work shows up under ``*_other``.

GFLOP/s count the GEMM work only: forward ``2·T·B·G·(I+H)`` per direction with
``G = n_blocks·H``, backward twice that. The percentage of peak compares with a large
``matmul`` of the same dtype and thread count measured in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

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

#: Environment variables that change which OpenBLAS kernels run (DESIGN.md section 3).
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")

#: Seconds of sleep before each block of the comparison with torch. Thread pools left
#: spinning by one implementation slow the next (DESIGN.md section 3), but the block's
#: warm-up (:data:`BLOCK_WARMUP_S`) absorbs that: measured 2026-11-29, 2 threads, blocks of
#: 2 calls after 30 ms of warm-up, each right after 3 calls of the other implementation,
#: medians of forward+backward over pauses of 0, 0.02, 0.1, 0.25 and 0.75 s: T=50 B=32 I=32
#: H=64, ours 0.79-0.81 ms and torch 1.08-1.11; T=100 B=64 I=128 H=256, ours 42.7-43.3 and
#: torch 60.2-60.7, with no trend in the pause. Short, so that --repeat rounds stay quick.
COMPARE_PAUSE_S = 0.1
#: Timed calls per block in the comparison with torch (``repeat`` rounds of blocks).
COMPARE_CALLS = 2


# ----------------------------------------------------------------------------- helpers


def median_ms(samples) -> float:
    return 1e3 * statistics.median(samples)


def time_calls(fn, repeat: int, warmup: int = 1, warmup_s: float = 0.0) -> list[float]:
    """Seconds per call of ``fn()`` over ``repeat`` calls after untimed ones: ``warmup``
    calls, and more until ``warmup_s`` seconds have passed."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    while time.perf_counter() - start < warmup_s:
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


#: Seconds of untimed calls that start each block of :func:`interleaved_samples`. For
#: about 10 ms after a pause, every implementation runs slower on these 2-vCPU machines:
#: small forward+backward (T=50, B=32, I=32, H=64), the first call after a 0.75 s pause
#: took about 1.7 ms (ours) and 2.4-3.0 (torch), calls 20-39 about 0.81 and 1.10-1.19 ms.
#: A training loop calls back to back, so the blocks time that steady state.
BLOCK_WARMUP_S = 0.03


def interleaved_samples(fns: dict, rounds: int, calls: int, pause_s: float,
                        warmup_s: float = BLOCK_WARMUP_S) -> dict:
    """Seconds per call of each ``fns[key]()``, timed in alternating blocks.

    Each round runs one block per implementation, in the order of ``fns`` in even rounds
    and reversed in odd ones, so that slow periods of the host fall on all of them. Each
    block sleeps ``pause_s`` (so that a thread pool left spinning by the previous block
    does not slow this one), then runs :func:`time_calls` with at least one untimed call
    and ``warmup_s`` seconds of them, then ``calls`` timed ones. Returns
    ``{key: [rounds * calls seconds]}``.
    """
    samples = {key: [] for key in fns}
    order = list(fns)
    for r in range(rounds):
        for key in (order if r % 2 == 0 else order[::-1]):
            time.sleep(pause_s)
            samples[key] += time_calls(fns[key], calls, warmup_s=warmup_s)
    return samples


def env_settings() -> dict:
    """The BLAS/threading environment variables, ``None`` where unset."""
    return {name: os.environ.get(name) for name in BLAS_ENV}


def _library_owner(path: str) -> str:
    lowered = path.replace("\\", "/").lower()
    for owner in ("numpy", "scipy", "torch", "numba"):
        if f"/{owner}.libs/" in lowered or f"/{owner}/" in lowered:
            return owner
    return "system"


def blas_info() -> list[dict]:
    """The thread pools threadpoolctl sees (BLAS and OpenMP), with the package owning each."""
    from threadpoolctl import threadpool_info

    rows = []
    for info in threadpool_info():
        rows.append({
            "owner": _library_owner(info.get("filepath", "")),
            "user_api": info.get("user_api"),
            "internal_api": info.get("internal_api"),
            "version": info.get("version"),
            "architecture": info.get("architecture"),
            "threading_layer": info.get("threading_layer"),
            "num_threads": info.get("num_threads"),
            "filepath": info.get("filepath"),
        })
    return rows


def engine_limiter_gaps() -> list[str]:
    """BLAS libraries loaded now that the engine's one-thread limiter does not cover.

    The engine builds its ``ThreadpoolController`` once; a BLAS loaded after that (SciPy's,
    which Numba's ``np.dot`` loads when the kernels compile) is not held to one thread.
    """
    try:
        from lstm_numba import engine

        covered = {os.path.realpath(lib.filepath) for lib in engine._threadpool_controller().lib_controllers}
    except Exception:  # a diagnostic only; the engine may change
        return []
    return sorted(os.path.basename(row["filepath"]) for row in blas_info()
                  if row["user_api"] == "blas" and os.path.realpath(row["filepath"]) not in covered)


def threads_info() -> dict:
    import numba

    info = {"numba": numba.get_num_threads(), "numba_threading_layer": None, "cpus": os.cpu_count()}
    with contextlib.suppress(ValueError):  # only known after a parallel region ran
        info["numba_threading_layer"] = numba.threading_layer()
    torch = _torch()
    if torch is not None:
        info["torch"] = torch.get_num_threads()
    return info


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def blas_peak_gflops(dtype, threads: int, n: int = 1024, repeat: int = 7) -> float:
    """GFLOP/s of the best of ``repeat`` ``(n, n) @ (n, n)`` NumPy matmuls on ``threads``."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    with threadpool_limits(limits=threads, user_api="blas"):
        best = min(time_calls(lambda: np.matmul(a, b, out=out), repeat, warmup=2))
    return 2.0 * n ** 3 / best / 1e9


def forward_flops(steps: int, batch: int, input_size: int, hidden_size: int, n_blocks: int = 4,
                  num_layers: int = 1, num_directions: int = 1) -> float:
    """GEMM flops of one forward: ``2·T·B·G·(I+H)`` per (layer, direction)."""
    gates = n_blocks * hidden_size
    total = 0.0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else hidden_size * num_directions
        total += num_directions * 2.0 * steps * batch * gates * (layer_input + hidden_size)
    return total


def model_flops(model, steps: int, batch: int) -> tuple[float, float]:
    """GEMM flops of one forward of ``model``: (input projections, recurrent projections).

    Read from the parameter shapes, so it holds for any gate: ``2·T·B·G·I`` per
    ``weight_ih*`` and ``2·T·B·G·H`` per ``weight_hh*``. Backward is twice the sum.
    """
    input_flops = recurrent_flops = 0.0
    for key, value in model.params.items():
        if key.startswith("weight_ih"):
            input_flops += 2.0 * steps * batch * value.shape[0] * value.shape[1]
        elif key.startswith("weight_hh"):
            recurrent_flops += 2.0 * steps * batch * value.shape[0] * value.shape[1]
    return input_flops, recurrent_flops


def fused_input_flops(model, steps: int, batch: int) -> float:
    """The part of :func:`model_flops`' input flops that runs inside the forward kernels.

    ``2·T·B·G·I`` for each ``weight_ih*`` whose projection the engine fuses into the time
    loop (the tiling the engine chooses for that shape, :func:`lstm_numba.engine.tiling`).
    """
    from lstm_numba import engine

    gate = model.gate
    total = 0.0
    for key, value in model.params.items():
        if key.startswith("weight_ih"):
            n_gates, inputs = value.shape
            tile = engine.tiling(gate.elementwise, gate.additive, batch, inputs, model.hidden_size, n_gates,
                                 model.dtype.itemsize)
            if tile.fused_input:
                total += 2.0 * steps * batch * n_gates * inputs
    return total


def _gflops(flops: float, ms: float) -> float | None:
    return flops / (ms * 1e-3) / 1e9 if ms and ms > 0 else None


# ----------------------------------------------------------------------------- compile


_COMPILE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import lstm_numba as ln
t1 = time.perf_counter()
cfg = json.loads(sys.argv[1])
model = ln.LSTM(**cfg)
x = np.zeros((3, 2, cfg["input_size"]), dtype=cfg.get("dtype", "float32"))
t2 = time.perf_counter()
y, _ = model(x)
t3 = time.perf_counter()
model.backward(np.ones_like(y))
t4 = time.perf_counter()
print("LSTM_NUMBA_COMPILE " + json.dumps({"import_s": t1 - t0, "build_s": t2 - t1,
                                          "forward_s": t3 - t2, "backward_s": t4 - t3}))
"""


def _run_compile_script(config: dict, cache_dir: str, timeout: float) -> dict:
    env = dict(os.environ)
    env["LSTM_NUMBA_CACHE_DIR"] = cache_dir
    env.pop("NUMBA_CACHE_DIR", None)  # numba then caches next to the generated modules
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(config)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith("LSTM_NUMBA_COMPILE "):
            result = json.loads(line.split(" ", 1)[1])
            result["first_call_s"] = result["forward_s"] + result["backward_s"]
            result["process_s"] = wall
            return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"compile measurement failed (exit {proc.returncode}): {tail}")


def measure_compile(config: dict, timeout: float = 600.0) -> dict:
    """First forward+backward call in a fresh process: cold (empty kernel cache) and cached.

    ``config`` is an ``LSTM.config()`` dict. Returns ``{"cold": {...}, "cached": {...}}``,
    each with ``import_s``, ``build_s``, ``forward_s``, ``backward_s``, ``first_call_s``
    (forward + backward) and ``process_s`` (the subprocess's whole wall time).
    """
    config = dict(config, batch_first=False, dropout=0.0)
    cache_dir = tempfile.mkdtemp(prefix="lstm_numba_profile_cache_")
    try:
        cold = _run_compile_script(config, cache_dir, timeout)
        cached = _run_compile_script(config, cache_dir, timeout)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return {"cold": cold, "cached": cached}


# ----------------------------------------------------------------------------- checkpoints


def model_from_checkpoint(path) -> tuple:
    """The recurrent layers of an ``lstm-numba train`` checkpoint, with its weights.

    Returns ``(layer, info)``; ``info`` holds the task and the sequence length and batch
    size it was trained with (``seq_len`` is None for classification, whose length comes
    from the data). Raises ``CheckpointError`` naming the file (including a missing
    plugin).
    """
    from lstm_numba.train import load_trained

    trained = load_trained(path)
    return trained.model.rnn, {"task": trained.task, "seq_len": trained.config.window,
                               "batch_size": trained.config.batch_size}


# ----------------------------------------------------------------------------- phases

#: Kernel-module function -> phase. Time spent in a pass outside these calls (NumPy work,
#: allocation, zero-fills, copies, Python) is the pass's ``*_other`` phase.
KERNEL_PHASES = {
    "input_projection": "input_gemm",
    "forward_rows": "forward_kernel",
    "forward_parts": "forward_kernel",
    "backward_rows": "backward_kernel",
    "backward_parts": "backward_kernel",
    "weight_gradients": "backward_gemms",
    "weight_gradients_blocked": "backward_gemms",
    "input_gradient": "backward_gemms",
}


class _TimedKernels:
    """Stands in for a generated kernel module and times each call of a known kernel."""

    def __init__(self, module, totals: dict):
        self._module = module
        self._totals = totals

    def __getattr__(self, name):
        fn = getattr(self._module, name)
        phase = KERNEL_PHASES.get(name)
        if phase is None or not callable(fn):
            return fn
        totals = self._totals

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[phase] = totals.get(phase, 0.0) + time.perf_counter() - start

        return timed


#: Module globals of :mod:`lstm_numba.engine` that hold kernel modules shared by every
#: layer (the gate-independent GEMM kernels); hooked like the layer's own kernel module.
ENGINE_KERNEL_MODULES = ("gemm",)


@contextlib.contextmanager
def _hooked(model, totals: dict):
    """Route kernel calls through :class:`_TimedKernels` while the public API runs.

    The layer's generated module (``model._kernels``) and the engine's shared kernel
    modules (:data:`ENGINE_KERNEL_MODULES`) are swapped for timing stand-ins and restored
    afterwards; nothing in the engine's code changes.
    """
    from lstm_numba import engine

    real = model.kernels
    swapped = {name: getattr(engine, name) for name in ENGINE_KERNEL_MODULES if hasattr(engine, name)}
    model._kernels = _TimedKernels(real, totals)
    for name, module in swapped.items():
        setattr(engine, name, _TimedKernels(module, totals))
    try:
        yield
    finally:
        model._kernels = real
        for name, module in swapped.items():
            setattr(engine, name, module)


def _timed_iteration(model, x, dy, optimizer) -> dict:
    """One training iteration through the public API; seconds per phase and per pass."""
    totals: dict = {}
    with _hooked(model, totals):
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


def _torch_equivalent(model):
    """A ``torch.nn.LSTM``/``GRU`` with the model's weights, or ``(None, reason)``."""
    torch = _torch()
    if torch is None:
        return None, "torch is not installed: no comparison"
    cfg = model.config()
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cfg["gate"])
    if cls is None:
        return None, f"torch has no equivalent of gate {cfg['gate']!r}: no comparison"
    if (cfg["activation"], cfg["recurrent_activation"]) != ("tanh", "sigmoid") or cfg["clip"] is not None:
        return None, "torch has no equivalent of non-default activations or clip: no comparison"
    ab = (cfg["activation_alpha"], cfg["activation_beta"], cfg["recurrent_activation_alpha"],
          cfg["recurrent_activation_beta"])
    defaults = []
    from lstm_numba import registry

    for name in ("tanh", "sigmoid"):
        act = registry.get_activation(name).obj
        defaults += [act.alpha, act.beta]
    if list(ab) != defaults:
        return None, "torch has no equivalent of non-default activation parameters: no comparison"
    net = cls(model.input_size, model.hidden_size, num_layers=model.num_layers, bias=model.bias,
              bidirectional=model.bidirectional, dtype=getattr(torch, model.dtype.name))
    with torch.no_grad():
        for key, value in model.state_dict().items():
            getattr(net, key).copy_(torch.from_numpy(value))
    return net, ""


def phase_breakdown(model, x, dy, repeat: int = 5, optimizer=None) -> dict:
    """Median milliseconds per phase of ``repeat`` training iterations (after one warm-up).

    ``x`` and ``dy`` are shaped as the layer's ``forward`` and ``backward`` take them.
    Returns ``phases_ms`` (keys :data:`PHASES`), ``forward_ms``, ``backward_ms``,
    ``forward_backward_ms``, ``iteration_ms`` and ``notes``. The optimizer (an
    :class:`lstm_numba.optim.Adam` with a tiny learning rate by default) updates the weights.
    """
    from lstm_numba.optim import Adam

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
    dy = rng.standard_normal((steps, batch, model.num_directions * model.hidden_size)).astype(dtype)
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
    peak = blas_peak_gflops(dtype, threads["numba"])
    gflops = {"inference": _gflops(fflops, inference_ms), "forward": _gflops(fflops, forward_ms),
              "forward_backward": _gflops(3 * fflops, fb_ms)}
    result.update({
        "phases_ms": phases_ms,
        "phase_gflops": {p: (_gflops(f, phases_ms[p]) if phases_ms[p] > 0 else None)
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

    result["torch"] = _profile_torch(model, x_user, dy_user, x, dy, repeat) if torch else \
        {"available": False, "note": "skipped (--no-torch)"}
    result["notes"] = notes
    return result


def _profile_torch(model, x_user, dy_user, x, dy, repeat) -> dict:
    """Time ``model`` and its torch equivalent in alternating blocks (:func:`interleaved_samples`).

    ``x_user`` and ``dy_user`` are in the model's layout, ``x`` and ``dy`` time-major.
    ``repeat`` rounds of :data:`COMPARE_CALLS` timed calls each, for forward+backward and
    for inference; the ratios are of the medians.
    """
    net, reason = _torch_equivalent(model)
    if net is None:
        return {"available": False, "note": reason}
    import numba
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(numba.get_num_threads())
    try:
        tx = torch.from_numpy(x).requires_grad_(True)
        tdy = torch.from_numpy(dy)
        with torch.no_grad():
            ty, _ = net(tx)
        ours = np.asarray(model.forward(x_user, need_grad=False)[0])
        diff = float(np.max(np.abs(ty.numpy() - (ours.transpose(1, 0, 2) if model.batch_first else ours))))

        def torch_forward_backward():
            for p in net.parameters():
                p.grad = None
            tx.grad = None
            out, _ = net(tx)
            out.backward(tdy)

        def torch_inference():
            with torch.no_grad():
                net(tx)

        def ours_forward_backward():
            model.forward(x_user, need_grad=True)
            model.backward(dy_user)

        def ours_inference():
            model.forward(x_user, need_grad=False)

        time.sleep(COMPARE_PAUSE_S)
        samples = {
            "forward_backward": interleaved_samples({"ours": ours_forward_backward, "torch": torch_forward_backward},
                                                    repeat, COMPARE_CALLS, COMPARE_PAUSE_S),
            "inference": interleaved_samples({"ours": ours_inference, "torch": torch_inference},
                                             repeat, COMPARE_CALLS, COMPARE_PAUSE_S),
        }
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    time.sleep(COMPARE_PAUSE_S)
    result = {"available": True, "module": type(net).__name__, "version": torch.__version__, "threads": threads,
              "max_abs_diff_forward": diff}
    for mode, timed in samples.items():
        ours_ms, torch_ms = median_ms(timed["ours"]), median_ms(timed["torch"])
        result.update({f"{mode}_ms": torch_ms, f"ours_{mode}_ms": ours_ms, f"ratio_{mode}": torch_ms / ours_ms})
    result["sampling"] = {"rounds": repeat, "calls": COMPARE_CALLS, "pause_s": COMPARE_PAUSE_S,
                          "warmup_s": BLOCK_WARMUP_S}
    result["note"] = ("ratio = torch time / our time (> 1: lstm-numba is faster), medians of alternating blocks "
                      "of calls through the public APIs; torch has our weights")
    return result


# ----------------------------------------------------------------------------- report


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
