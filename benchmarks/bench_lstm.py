#!/usr/bin/env python
"""lstm-numba against torch.nn.LSTM, measured in one process with the same thread count.

    python benchmarks/bench_lstm.py                         # env as is
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_lstm.py   # targets

float32, single layer, unidirectional. For each configuration and for inference forward
and training forward+backward it prints the median (and minimum) milliseconds, GFLOP/s
(forward ``2·T·B·4H·(I+H)``, forward+backward three times that), and the speed ratio
torch time / our time (above 1: lstm-numba is faster). The implementations are timed in
alternating blocks with a pause between blocks, so that a thread pool left spinning by one
does not slow the other and background load falls on both; each block first runs untimed
calls for 30 ms, so that the timed ones see the steady state of a training loop
(``lstm_numba.profiling.timing.interleaved_samples``, shared with ``bench_plugins.py``). Before
timing, torch's forward output and gradients are checked against ours on the same weights
and inputs.

Each GFLOP/s figure is also given as a fraction of this run's sgemm peak (a NumPy float32
2048^3 matmul on the same threads, median of 5). ``--load N`` starts N competing busy
processes (one core each) before the timings and stops them after, so the ratios are those
under that load. ``--step-kernels`` times our layer twice, with the time loops' step GEMMs
forced onto the engine's microkernel and onto BLAS (``LSTM_NUMBA_STEP_KERNEL``), against
the same torch.

It also prints the CPU model and ISA, the Numba target, which step kernel each config ran
and why, which BLAS libraries and kernels ran (threadpoolctl), the BLAS environment
variables, and the compile time of the kernels: the first forward+backward call in a fresh
process with an empty kernel cache (cold) and in a second process with that cache (target
below 0.5 s). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from lstm_numba.profiling import compile_time, machine, timing
from lstm_numba.profiling.flops import forward_flops as layer_forward_flops
from lstm_numba.profiling.load import busy_processes
from lstm_numba.profiling.timing import BLOCK_WARMUP_S

CONFIGS = {
    "small": dict(T=50, B=32, I=32, H=64),
    "medium": dict(T=100, B=64, I=128, H=256),
    "large": dict(T=200, B=128, I=256, H=512),
}
#: (rounds, calls per round) for each configuration. Many short rounds: the host's slow
#: periods last seconds, and the more often the two implementations alternate, the more
#: evenly such a period falls on both (4 rounds of 5 medium calls gave ratios of 1.18 to
#: 1.31 between runs of the same code). Small calls take about 1 ms and swing the most:
#: in one run of 60 rounds, the forward+backward ratio of any 10 consecutive rounds ranged
#: 1.30-1.82 (sd 0.14), of any 30 rounds 1.37-1.66 (sd 0.09), around the same median
#: (1.43 and 1.46); medium's 10-round windows, in a 40-round run, spanned 1.41-1.45.
SAMPLING = {"small": (30, 4), "medium": (10, 2), "large": (4, 2)}
#: Issue 2's targets for the ratio torch/ours (None: no target).
TARGETS = {
    ("small", "forward"): 1.0, ("medium", "forward"): 0.7, ("large", "forward"): None,
    ("small", "forward+backward"): 1.3, ("medium", "forward+backward"): 1.3, ("large", "forward+backward"): 1.0,
}
CACHED_FIRST_CALL_TARGET_S = 0.5
MODES = ("forward", "forward+backward")


_OUT = {"stream": sys.stdout}  # the tables go to stderr when the JSON goes to stdout


def log(*args):
    print(*args, file=_OUT["stream"], flush=True)


def forward_flops(c) -> float:
    return layer_forward_flops(c["T"], c["B"], c["I"], c["H"])


#: The sgemm peak's matrix size and calls (the median is reported).
PEAK_N, PEAK_REPEAT = 2048, 5
#: Our layer's variants: label -> LSTM_NUMBA_STEP_KERNEL (None: as the environment says).
DEFAULT_VARIANTS = {"ours": None}
STEP_KERNEL_VARIANTS = {"ours micro": "micro", "ours blas": "blas"}


def max_rel_err(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = np.abs(expected).max(initial=0.0)
    return float(np.abs(actual - expected).max(initial=0.0) / (scale or 1.0))


class Pair:
    """Our layer and torch's with the same weights, inputs and output gradient."""

    def __init__(self, c, seed=0):
        import torch

        import lstm_numba as ln

        self.ours = ln.LSTM(c["I"], c["H"], dtype="float32", seed=seed)
        self.torch = torch.nn.LSTM(c["I"], c["H"])
        with torch.no_grad():
            for key, value in self.ours.state_dict().items():
                getattr(self.torch, key).copy_(torch.from_numpy(value))
        rng = np.random.default_rng(seed + 1)
        self.x = rng.standard_normal((c["T"], c["B"], c["I"])).astype(np.float32)
        self.dy = rng.standard_normal((c["T"], c["B"], c["H"])).astype(np.float32)
        self.tx = torch.from_numpy(self.x.copy()).requires_grad_(True)  # torch computes dx too, as we do
        self.tdy = torch.from_numpy(self.dy.copy())
        self._torch = torch

    def check(self) -> dict:
        """Forward outputs and gradients of both on the benchmark inputs."""
        y, (h, c) = self.ours.forward(self.x, need_grad=True)
        grads = self.ours.backward(self.dy)
        for p in self.torch.parameters():
            p.grad = None
        self.tx.grad = None
        ty, (th, tc) = self.torch(self.tx)
        ty.backward(self.tdy)
        report = {
            "y_max_abs_diff": float(np.abs(ty.detach().numpy() - y).max()),
            "c_max_abs_diff": float(np.abs(tc.detach().numpy()[0] - c[0]).max()),
            "dx_max_rel_err": max_rel_err(grads.x, self.tx.grad.numpy()),
            "dW_max_rel_err": max(max_rel_err(grads.params[k], getattr(self.torch, k).grad.numpy())
                                  for k in grads.params),
        }
        report["ok"] = (report["y_max_abs_diff"] < 1e-4 and report["c_max_abs_diff"] < 1e-4
                        and report["dx_max_rel_err"] < 1e-3 and report["dW_max_rel_err"] < 1e-3)
        return report

    # The four timed callables.
    def ours_forward(self):
        self.ours.forward(self.x, need_grad=False)

    def ours_forward_backward(self):
        y, _ = self.ours.forward(self.x, need_grad=True)
        self.ours.backward(self.dy)

    def torch_forward(self):
        with self._torch.no_grad():
            self.torch(self.tx)

    def torch_forward_backward(self):
        for p in self.torch.parameters():
            p.grad = None
        self.tx.grad = None
        y, _ = self.torch(self.tx)
        y.backward(self.tdy)


@contextlib.contextmanager
def step_kernel_env(choice):
    """While inside, ``LSTM_NUMBA_STEP_KERNEL`` is ``choice`` (left as is for None)."""
    from lstm_numba.engine.tiling import STEP_KERNEL_ENV

    before = os.environ.get(STEP_KERNEL_ENV)
    if choice is not None:
        os.environ[STEP_KERNEL_ENV] = choice
    try:
        yield
    finally:
        if choice is not None and before is None:
            del os.environ[STEP_KERNEL_ENV]
        elif choice is not None:
            os.environ[STEP_KERNEL_ENV] = before


def with_step_kernel(choice, fn):
    """``fn`` run with ``LSTM_NUMBA_STEP_KERNEL`` set to ``choice``."""
    def run():
        with step_kernel_env(choice):
            fn()
    return run


def step_kernels_of(c, choice) -> dict:
    """Which kernel each time loop's step GEMM runs for config ``c`` (``engine.tiling``)."""
    from lstm_numba.engine.tiling import describe_step_kernels

    with step_kernel_env(choice):
        return describe_step_kernels(True, False, c["B"], c["I"], c["H"], 4 * c["H"], 4)


def run_config(name, c, rounds, calls, pause, warmup, phases, variants, peak) -> dict:
    pair = Pair(c)
    check = pair.check()
    fns = {("torch", "forward"): pair.torch_forward, ("torch", "forward+backward"): pair.torch_forward_backward}
    for label, choice in variants.items():
        fns[(label, "forward")] = with_step_kernel(choice, pair.ours_forward)
        fns[(label, "forward+backward")] = with_step_kernel(choice, pair.ours_forward_backward)
    for fn in fns.values():  # warm-up: compile / load kernels, allocator, oneDNN primitives
        fn()
    impls = [*variants, "torch"]
    samples = {}
    for mode in MODES:
        timed = timing.interleaved_samples({impl: fns[(impl, mode)] for impl in impls}, rounds, calls, pause, warmup)
        samples.update({(impl, mode): values for impl, values in timed.items()})
    flops = forward_flops(c)
    rows = []
    for label in variants:
        rows += _rows(name, c, label, samples, flops, peak)
    result = {"config": name, "sizes": c, "check": check, "rows": rows,
              "step_kernels": {label: step_kernels_of(c, choice) for label, choice in variants.items()}}
    if phases:
        time.sleep(pause)
        result["phases"] = phases.phase_breakdown(pair.ours, pair.x, pair.dy, repeat=max(3, calls))
    return result


def _rows(name, c, label, samples, flops, peak) -> list:
    rows = []
    for mode in MODES:
        mode_flops = flops if mode == "forward" else 3 * flops
        ours, torch = samples[(label, mode)], samples[("torch", mode)]
        o_med, t_med = statistics.median(ours), statistics.median(torch)
        target = TARGETS.get((name, mode))
        ratio = t_med / o_med
        rows.append({
            "config": name, **c, "mode": mode, "variant": label, "samples": len(ours),
            "ours_ms": 1e3 * o_med, "ours_min_ms": 1e3 * min(ours),
            "torch_ms": 1e3 * t_med, "torch_min_ms": 1e3 * min(torch),
            "ours_gflops": mode_flops / o_med / 1e9, "torch_gflops": mode_flops / t_med / 1e9,
            "ours_peak_fraction": mode_flops / o_med / 1e9 / peak, "torch_peak_fraction": mode_flops / t_med / 1e9 / peak,
            "ratio": ratio, "ratio_min": min(torch) / min(ours),
            "target": target, "met": None if target is None else ratio >= target,
            "ours_samples_ms": [1e3 * s for s in ours], "torch_samples_ms": [1e3 * s for s in torch],
        })
    return rows


def print_header(info):
    log("lstm-numba benchmark: lstm_numba.LSTM vs torch.nn.LSTM, float32, 1 layer, unidirectional")
    log(f"python {info['python']}  numpy {info['numpy']}  numba {info['numba']}  torch {info['torch']}  "
        f"lstm-numba {info['lstm_numba']}")
    env = info["env"]
    log("env: " + "  ".join(f"{k}={'<unset>' if v is None else v}" for k, v in env.items()))
    th = info["threads"]
    log(f"threads: numba {th['numba']} (layer {th.get('numba_threading_layer') or '?'}), torch {th.get('torch')}, "
        f"{th['cpus']} CPUs; load average before {info['loadavg_before']}")
    cpu = info["cpu"]
    log(f"cpu: {cpu['description']}; ISA {' '.join(cpu['isa']) or '?'}; Numba target {cpu['llvm_cpu']} "
        f"({cpu['vector_bits']}-bit vectors); BLAS kernel {cpu['blas_kernel']}; OPENBLAS_CORETYPE "
        f"{'set to ' + env['OPENBLAS_CORETYPE'] if env.get('OPENBLAS_CORETYPE') else 'unset'}")
    log(f"competing load: {info['load']} busy process(es)")


def print_blas(rows):
    log("\nthread pools (threadpoolctl, after the runs):")
    log(f"  {'owner':<7}{'user_api':<9}{'internal_api':<13}{'version':<16}{'kernel':<12}{'threads':>7}  library")
    for r in rows:
        log(f"  {r['owner']:<7}{r['user_api']:<9}{r['internal_api'] or '-':<13}{r['version'] or '-':<16}"
            f"{r['architecture'] or '-':<12}{r['num_threads']:>7}  {os.path.basename(r['filepath'] or '')}")


def print_compile(comp):
    log("\nkernel compile time (lstm gate, float32; first forward+backward call in a fresh process):")
    for key, label in (("cold", "cold, empty LSTM_NUMBA_CACHE_DIR"), ("cached", "second process, same cache")):
        r = comp[key]
        log(f"  {label:<34} first call {r['first_call_s']:7.3f} s  (forward {r['forward_s']:.3f} s, "
            f"backward {r['backward_s']:.3f} s; import lstm_numba {r['import_s']:.2f} s, "
            f"whole process {r['process_s']:.2f} s)")
    ok = comp["cached"]["first_call_s"] < CACHED_FIRST_CALL_TARGET_S
    log(f"  target: second-process first call < {CACHED_FIRST_CALL_TARGET_S} s -> {'met' if ok else 'NOT met'}")


def print_results(results):
    log("\nmedian ms (min in brackets), GFLOP/s, % of this run's sgemm peak, ratio = torch time / our time "
        "(> 1: lstm-numba faster)")
    head = (f"{'config':<8}{'mode':<18}{'ours':<12}{'n':>3}{'ours ms':>17}{'torch ms':>17}{'ours GF/s':>11}"
            f"{'%peak':>7}{'torch GF/s':>11}{'%peak':>7}{'ratio':>7}{'(min)':>7}{'target':>8}  met")
    log(head)
    log("-" * len(head))
    for res in results:
        for r in res["rows"]:
            target = "-" if r["target"] is None else f">={r['target']:.1f}"
            met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
            log(f"{r['config']:<8}{r['mode']:<18}{r['variant']:<12}{r['samples']:>3}"
                f"{r['ours_ms']:>9.2f} [{r['ours_min_ms']:>6.2f}]{r['torch_ms']:>9.2f} [{r['torch_min_ms']:>6.2f}]"
                f"{r['ours_gflops']:>11.1f}{100 * r['ours_peak_fraction']:>6.0f}%{r['torch_gflops']:>11.1f}"
                f"{100 * r['torch_peak_fraction']:>6.0f}%{r['ratio']:>7.2f}{r['ratio_min']:>7.2f}{target:>8}  {met}")
    log("\nstep GEMM kernels (engine.tiling.step_kernel):")
    for res in results:
        for label, loops in res["step_kernels"].items():
            for loop, text in loops.items():
                log(f"  {res['config']:<8}{label:<12}{loop:<9}{text}")
    log("\nsanity (same weights and inputs): max |y - y_torch|, max |c_T - c_T torch|, "
        "max rel err of dx and of the weight gradients")
    for res in results:
        ch = res["check"]
        log(f"  {res['config']:<8} y {ch['y_max_abs_diff']:.1e}  c {ch['c_max_abs_diff']:.1e}  "
            f"dx {ch['dx_max_rel_err']:.1e}  dW {ch['dW_max_rel_err']:.1e}  {'ok' if ch['ok'] else 'MISMATCH'}")


def print_phases(results):
    from lstm_numba.profiling.phases import PHASE_LABELS, PHASES

    log("\nwhere our training iteration goes (median ms per phase; lstm-numba profile has more):")
    names = [res["config"] for res in results if "phases" in res]
    log(f"  {'phase':<42}" + "".join(f"{n:>12}" for n in names))
    for phase in PHASES:
        log(f"  {PHASE_LABELS[phase]:<42}"
            + "".join(f"{res['phases']['phases_ms'][phase]:>12.2f}" for res in results if "phases" in res))
    log(f"  {'forward+backward':<42}"
        + "".join(f"{res['phases']['forward_backward_ms']:>12.2f}" for res in results if "phases" in res))


def cpu_info() -> dict:
    """The CPU, the ISA Numba compiles for, the microkernel's width and the BLAS kernel."""
    from lstm_numba.engine import blas_control
    from lstm_numba.engine.kernels import microkernel

    return {**machine.cpu_model(), "description": machine.cpu_description(),
            "vector_bits": 8 * microkernel.VECTOR_BYTES, "blas_kernel": blas_control.kernel_names()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=[*CONFIGS, "all"], nargs="+", default=["all"],
                        help="configurations to run (default: all)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both (default: numba's default, i.e. the CPU count)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per mode (default per config)")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per round (default per config)")
    parser.add_argument("--pause", type=float, default=0.75, help="seconds between implementations (default 0.75)")
    parser.add_argument("--warmup", type=float, default=BLOCK_WARMUP_S,
                        help=f"seconds of untimed calls after each pause (default {BLOCK_WARMUP_S})")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time subprocesses")
    parser.add_argument("--phases", action="store_true", help="also print our per-phase breakdown")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="competing busy processes (one core each) during the timings (default 0)")
    parser.add_argument("--step-kernels", action="store_true",
                        help="time ours with the step GEMMs forced onto the microkernel and onto BLAS")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write all results as JSON to PATH ('-': stdout, tables go to stderr)")
    args = parser.parse_args(argv)
    if args.json == "-":
        _OUT["stream"] = sys.stderr

    import numba
    import torch

    import lstm_numba
    if args.threads:
        numba.set_num_threads(args.threads)
    torch.set_num_threads(numba.get_num_threads())
    names = list(CONFIGS) if "all" in args.config else list(dict.fromkeys(args.config))

    info = {
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "torch": torch.__version__, "lstm_numba": lstm_numba.__version__, "machine": platform.machine(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                               "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")},
        "threads": {"numba": numba.get_num_threads(), "torch": torch.get_num_threads(), "cpus": os.cpu_count()},
        "loadavg_before": [round(v, 2) for v in os.getloadavg()], "load": args.load,
        "cpu": cpu_info(),
    }
    print_header(info)

    compile_result = None
    if not args.no_compile:
        probe = lstm_numba.LSTM(CONFIGS["small"]["I"], CONFIGS["small"]["H"], dtype="float32", seed=0)
        compile_result = compile_time.measure_compile(probe.config())
        print_compile(compile_result)
        time.sleep(1.0)

    variants = STEP_KERNEL_VARIANTS if args.step_kernels else DEFAULT_VARIANTS
    results = []
    peak = machine.blas_peak_gflops(np.float32, numba.get_num_threads(), n=PEAK_N, repeat=PEAK_REPEAT,
                                    statistic=statistics.median)
    log(f"numpy sgemm {PEAK_N}^3 on {numba.get_num_threads()} threads: {peak:.0f} GFLOP/s "
        f"(this run's peak, median of {PEAK_REPEAT}, before any competing load)")
    with busy_processes(args.load):
        for name in names:
            rounds, calls = SAMPLING[name]
            res = run_config(name, CONFIGS[name], args.rounds or rounds, args.calls or calls, args.pause,
                             args.warmup, args.phases, variants, peak)
            results.append(res)
            log(f"  ... {name} done")
    info["threads"] = machine.threads_info()
    info["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    blas = machine.blas_info()
    print_blas(blas)
    gaps = machine.engine_limiter_gaps()
    if gaps:
        log(f"  WARNING: the engine's one-thread BLAS limiter does not cover {', '.join(gaps)}")
    print_results(results)
    if args.phases:
        print_phases(results)
    log(f"\nload average after {info['loadavg_after']} (1, 5, 15 min; a busy machine inflates all times)")

    if args.json:
        doc = {"info": info, "blas": blas, "sgemm_peak_gflops": peak, "compile": compile_result,
               "results": results}
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as handle:
                handle.write(text + "\n")
    return 0 if all(res["check"]["ok"] for res in results) else 2


if __name__ == "__main__":
    sys.exit(main())
