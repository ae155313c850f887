#!/usr/bin/env python
"""What the plugin path costs: built-in gate vs the same gate as a third-party plugin, and
default vs non-default activations, measured in one process.

    .venv/bin/python benchmarks/bench_plugins.py                     # T=100 B=64 I=128 H=256, float32
    .venv/bin/python benchmarks/bench_plugins.py --T 50 --B 32 --I 32 --H 64 --dtype float64

Forward+backward (training forward, then backward of a fixed dLoss/dy) of three layers with
the same weights and inputs:

  (a) ``lstm``, the built-in gate, tanh/sigmoid;
  (b) ``lstm_thirdparty``: the built-in lstm gate module's source copied verbatim into a
      module outside the package and registered through an ``lstm_numba.gates`` entry
      point of a separate distribution (``bench-thirdparty``), exactly as a third party
      would ship it; it gets its own generated kernel module and compile;
  (c) ``lstm`` with ``activation="softsign", recurrent_activation="hard_sigmoid"``.

Each is warmed up (compile or disk-cache load), then timed in many short rounds that
alternate the order, so that background load falls on all three alike, with a pause
between implementations (thread pools left spinning by one would slow the next, docs/performance.md) and 30 ms of untimed calls after each pause, as ``bench_lstm.py`` times them
(``lstm_numba.profiling.timing.interleaved_samples``). Ratios of medians are the result; the ratios
of minima are printed beside them as a check on a busy machine. It prints medians and
minima, the ratios (b)/(a) and (c)/(a) against the targets (third party within 10% of the
built-in; non-default activations no slower than the default), a bitwise check that (b)
computes exactly what (a) does, and which BLAS ran (threadpoolctl).
"""

from __future__ import annotations

import argparse
import atexit
import inspect
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from lstm_numba.profiling.timing import BLOCK_WARMUP_S, interleaved_samples

THIRD_PARTY_GATE = "lstm_thirdparty"
THIRD_PARTY_MODULE = "bench_thirdparty_lstm"
THIRD_PARTY_DIST = "bench-thirdparty"
TARGETS = {"b/a": 1.10, "c/a": 1.00}


def register_third_party_copy(root: Path) -> None:
    """Copy the built-in lstm gate's source into ``root`` as a plain module and register it
    under a separate distribution's ``lstm_numba.gates`` entry point (this process only)."""
    from lstm_numba_plugins.gates import lstm as builtin_lstm

    from lstm_numba import registry

    modules, dists = root / "modules", root / "dists"
    modules.mkdir(parents=True, exist_ok=True)
    (modules / f"{THIRD_PARTY_MODULE}.py").write_text(inspect.getsource(builtin_lstm))
    info = dists / f"{THIRD_PARTY_DIST.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {THIRD_PARTY_DIST}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[lstm_numba.gates]\n{THIRD_PARTY_GATE} = {THIRD_PARTY_MODULE}:gate\n")
    sys.path.insert(0, str(modules))
    extra = [ep for dist in metadata.distributions(path=[str(dists)]) for ep in dist.entry_points]
    installed = registry._entry_points
    registry._entry_points = lambda group: list(installed(group)) + [ep for ep in extra if ep.group == group]
    registry.REGISTRY.clear()


def blas_rows() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{k: row.get(k) for k in ("user_api", "internal_api", "version", "architecture", "num_threads",
                                     "threading_layer", "filepath")} for row in threadpool_info()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=100, help="time steps (default 100)")
    parser.add_argument("--B", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--I", type=int, default=128, help="input size (default 128)")
    parser.add_argument("--H", type=int, default=256, help="hidden size (default 256)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, alternating the order (default 7)")
    parser.add_argument("--calls", type=int, default=2,
                        help="timed calls per implementation per round, after the warm-up (default 2)")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between implementations (default 0.5)")
    parser.add_argument("--warmup", type=float, default=BLOCK_WARMUP_S,
                        help=f"seconds of untimed calls after each pause (default {BLOCK_WARMUP_S})")
    parser.add_argument("--threads", type=int, default=None, help="Numba threads (default: Numba's default)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.rounds * args.calls < 7:
        parser.error("need at least 7 timed repeats per implementation (rounds * calls)")

    import numba

    import lstm_numba as ln

    if args.threads:
        numba.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_plugins_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    register_third_party_copy(root)

    shape = dict(T=args.T, B=args.B, I=args.I, H=args.H)
    print(f"lstm-numba plugin benchmark: forward+backward, {args.dtype}, T={args.T} B={args.B} I={args.I} "
          f"H={args.H}, 1 layer, unidirectional")
    print(f"python {platform.python_version()}  numpy {np.__version__}  numba {numba.__version__}  "
          f"lstm-numba {ln.__version__}; numba threads {numba.get_num_threads()} of {os.cpu_count()} CPUs; "
          f"load average {tuple(round(v, 2) for v in os.getloadavg())}")
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                          "OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER")}
    print("env: " + "  ".join(f"{k}={'<unset>' if v is None else v}" for k, v in env.items()))

    base = ln.LSTM(args.I, args.H, dtype=args.dtype, seed=0)
    impls = {
        "a": ("built-in lstm, tanh/sigmoid", base),
        "b": (f"third-party copy '{THIRD_PARTY_GATE}' ({THIRD_PARTY_DIST})",
              ln.LSTM(args.I, args.H, dtype=args.dtype, gate=THIRD_PARTY_GATE)),
        "c": ("built-in lstm, softsign/hard_sigmoid",
              ln.LSTM(args.I, args.H, dtype=args.dtype, activation="softsign", recurrent_activation="hard_sigmoid")),
    }
    for _, rnn in impls.values():
        rnn.load_state_dict(base.state_dict())
    entry = impls["b"][1].plugins["gate"]
    assert entry["distribution"] == THIRD_PARTY_DIST, entry

    rng = np.random.default_rng(1)
    x = rng.standard_normal((args.T, args.B, args.I)).astype(args.dtype)
    dy = rng.standard_normal((args.T, args.B, args.H)).astype(args.dtype)

    def step(rnn):
        def run():
            rnn.forward(x, need_grad=True)
            return rnn.backward(dy)
        return run

    fns = {key: step(rnn) for key, (_, rnn) in impls.items()}
    print("\nwarm-up (first call: generates, compiles or loads the kernels from the disk cache):")
    outputs = {}
    for key, fn in fns.items():
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
        y, _ = impls[key][1].forward(x, need_grad=True)
        outputs[key] = (y, impls[key][1].backward(dy))
        print(f"  ({key}) {impls[key][0]:<48} first call {first:7.2f} s")
    same = (np.array_equal(outputs["a"][0], outputs["b"][0])
            and all(np.array_equal(outputs["a"][1].params[k], outputs["b"][1].params[k]) for k in base.params)
            and np.array_equal(outputs["a"][1].x, outputs["b"][1].x))
    print(f"  (b) output and gradients bitwise equal to (a): {'yes' if same else 'NO'}")

    samples = interleaved_samples(fns, args.rounds, args.calls, args.pause, args.warmup)

    med = {k: statistics.median(v) for k, v in samples.items()}
    print(f"\nforward+backward, {args.rounds * args.calls} repeats each (median ms, min in brackets):")
    for key, (label, _) in impls.items():
        print(f"  ({key}) {label:<48} {1e3 * med[key]:9.2f} [{1e3 * min(samples[key]):8.2f}]")
    ratios = {"b/a": med["b"] / med["a"], "c/a": med["c"] / med["a"]}
    ratios_min = {"b/a": min(samples["b"]) / min(samples["a"]), "c/a": min(samples["c"]) / min(samples["a"])}
    print("\nratios of medians (min ratio in brackets) and targets:")
    labels = {"b/a": "third party / built-in", "c/a": "softsign+hard_sigmoid / tanh+sigmoid"}
    met = {}
    for key, value in ratios.items():
        met[key] = value <= TARGETS[key]
        print(f"  {key}  {labels[key]:<38} {value:6.3f} [{ratios_min[key]:6.3f}]  target <= {TARGETS[key]:.2f}  "
              f"{'met' if met[key] else 'NOT met'}")

    rows = blas_rows()
    print("\nthread pools (threadpoolctl, after the runs):")
    for row in rows:
        print(f"  {row['user_api'] or '-':<8}{row['internal_api'] or '-':<12}{row['version'] or '-':<14}"
              f"kernel {row['architecture'] or '-':<12}threads {row['num_threads']:<4}"
              f"{os.path.basename(row['filepath'] or '')}")
    print(f"load average after {tuple(round(v, 2) for v in os.getloadavg())}")

    if args.json:
        doc = {"shape": shape, "dtype": args.dtype, "env": env, "threads": numba.get_num_threads(),
               "sampling": {"rounds": args.rounds, "calls": args.calls, "pause_s": args.pause, "warmup_s": args.warmup},
               "samples_ms": {k: [1e3 * s for s in v] for k, v in samples.items()},
               "median_ms": {k: 1e3 * v for k, v in med.items()}, "ratios": ratios, "ratios_min": ratios_min,
               "targets": TARGETS, "met": met, "bitwise_equal_b_a": same, "blas": rows}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if same else 2


if __name__ == "__main__":
    sys.exit(main())
