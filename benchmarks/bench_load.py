#!/usr/bin/env python
"""Speed on a shared machine: lstm-numba's default thread policy against one thread and
against the old fixed count, beside 0, 1 and 2 competing busy processes.

    .venv/bin/python benchmarks/bench_load.py [--loads 0 1 2] [--rounds 3] [--json PATH]

For each load (busy processes, each a Python loop spinning on one core, started before and
stopped after that load's measurements) it times, in fresh subprocesses:

- ``train``: ``lstm-numba train`` on the embedded default (kernels cached by a first,
  untimed run), wall time of the whole command;
- ``layer``: a medium forward+backward (T=100 B=64 I=128 H=256, float32), the median of
  5 calls after 2 untimed ones, in lstm-numba and in ``torch.nn.LSTM`` (skipped without
  torch);

each under three settings: ``default`` (as a user runs it: adaptive thread count),
``1 thread`` (``NUMBA_NUM_THREADS=1``; torch: ``torch.set_num_threads(1)``) and ``fixed``
(``LSTM_NUMBA_ADAPTIVE_THREADS=0``: every pass on all of Numba's threads, the policy before
the adaptive one). The settings run in alternating order over ``--rounds`` rounds; medians
are printed with the ratios the targets are stated in: default / 1 thread (target <= 1.1)
and torch / default (above 1: lstm-numba ahead of torch under the same load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from lstm_numba.profiling.load import busy_processes

LAYER_SCRIPT = r"""
import sys, time
import numpy as np
which, threads = sys.argv[1], int(sys.argv[2])
T, B, I, H = 100, 64, 128, 256
rng = np.random.default_rng(0)
x = rng.normal(size=(T, B, I)).astype(np.float32)
times = []
if which == "torch":
    import torch
    if threads:
        torch.set_num_threads(threads)
    rnn = torch.nn.LSTM(I, H)
    xt = torch.from_numpy(x).requires_grad_(True)
    for _ in range(7):
        t = time.perf_counter()
        y, _ = rnn(xt)
        y.sum().backward()
        times.append(time.perf_counter() - t)
else:
    import lstm_numba as ln
    rnn = ln.LSTM(I, H, dtype=np.float32)
    for _ in range(7):
        t = time.perf_counter()
        y, _ = rnn.forward(x, need_grad=True)
        rnn.backward(np.ones_like(y))
        times.append(time.perf_counter() - t)
print(sorted(times[2:])[2])
"""

SETTINGS = {
    "default": {},
    "1 thread": {"NUMBA_NUM_THREADS": "1"},
    "fixed": {"LSTM_NUMBA_ADAPTIVE_THREADS": "0"},
}


def run_train(env: dict, workdir: str) -> float:
    cli = os.path.join(os.path.dirname(sys.executable), "lstm-numba")
    t = time.perf_counter()
    subprocess.run([cli, "train", "--force", "--out", os.path.join(workdir, "run.npz")], env=env,
                   cwd=workdir, check=True, capture_output=True)
    return time.perf_counter() - t


def run_layer(env: dict, which: str, threads: int) -> float:
    out = subprocess.run([sys.executable, "-c", LAYER_SCRIPT, which, str(threads)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def has_torch() -> bool:
    return subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0


def measure_load(load: int, rounds: int, workdir: str, torch: bool) -> dict:
    times = {f"{kind} {name}": [] for kind in ("train", "layer") for name in SETTINGS}
    if torch:
        times.update({"layer torch": [], "layer torch 1 thread": []})
    with busy_processes(load):
        names = list(SETTINGS)
        for r in range(rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                env = {**os.environ, **SETTINGS[name]}
                times[f"train {name}"].append(run_train(env, workdir))
                times[f"layer {name}"].append(run_layer(env, "ours", 0))
            if torch:
                times["layer torch"].append(run_layer(dict(os.environ), "torch", 0))
                times["layer torch 1 thread"].append(run_layer(dict(os.environ), "torch", 1))
    return {key: statistics.median(v) for key, v in times.items()}


def report(load: int, med: dict) -> list[str]:
    lines = [f"load: {load} busy process(es)"]
    for kind, unit, scale in (("train", "s", 1.0), ("layer", "ms", 1e3)):
        d, one, fixed = (med[f"{kind} {n}"] for n in SETTINGS)
        line = (f"  {kind:<5}  default {d * scale:8.2f} {unit}  1 thread {one * scale:8.2f}  fixed {fixed * scale:8.2f}"
                f"  default/1-thread {d / one:5.2f} (target <= 1.1)  fixed/1-thread {fixed / one:5.2f}")
        lines.append(line)
    if "layer torch" in med:
        lines.append(f"  torch  layer {med['layer torch'] * 1e3:8.2f} ms (1 thread {med['layer torch 1 thread'] * 1e3:8.2f})"
                     f"  torch/default {med['layer torch'] / med['layer default']:5.2f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside (default 0 1 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per load (default 3)")
    parser.add_argument("--json", default=None, help="also write the medians here")
    args = parser.parse_args(argv)

    from lstm_numba.profiling import machine

    print(f"{machine.cpu_description()}, {os.cpu_count()} CPUs; load average before {os.getloadavg()[0]:.2f}")
    torch = has_torch()
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        run_train(dict(os.environ), workdir)  # compile and cache the kernels
        for load in args.loads:
            results[load] = measure_load(load, args.rounds, workdir, torch)
            print("\n".join(report(load, results[load])), flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(k): v for k, v in results.items()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
