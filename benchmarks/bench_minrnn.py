#!/usr/bin/env python
"""minGRU and minLSTM (``gate="mingru"``, ``"minlstm"``: training as a parallel scan over time)
against our LSTM at an equal parameter count, one process, the same thread count, float32,
one layer, unidirectional.

    .venv/bin/python benchmarks/bench_minrnn.py
    .venv/bin/python benchmarks/bench_minrnn.py --steps 100 500 --batch 8 --json -

The LSTM has ``hidden`` units on ``inputs`` features (4H(I + H) + 8H parameters); each minimal
RNN gets the hidden size that gives it the nearest parameter count (minGRU 2H'(I + 1),
minLSTM 3H'(I + 1): no recurrent weights). For each T, ``forward`` is inference (the
minimal RNNs' step loop; the LSTM's), ``forward+backward`` training (the minimal RNNs' scan).
The three layers are timed in alternating blocks
(``lstm_numba.profiling.timing.interleaved_samples``, as the other benchmarks); it prints
median milliseconds per call and the ratio LSTM / minimal (above 1: the minimal RNN is
faster), with the CPU model, its vector extensions and the thread counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

from lstm_numba.profiling import machine
from lstm_numba.profiling.timing import interleaved_samples

GATES = ("lstm", "mingru", "minlstm")
MODES = ("forward", "forward+backward")


def lstm_parameters(inputs: int, hidden: int) -> int:
    return 4 * hidden * (inputs + hidden) + 8 * hidden


def equal_hidden(gate: str, inputs: int, hidden: int) -> int:
    """The hidden size of ``gate`` whose parameter count is nearest the LSTM's."""
    blocks = {"mingru": 2, "minlstm": 3}[gate]
    return max(1, round(lstm_parameters(inputs, hidden) / (blocks * (inputs + 1))))


def build(steps, batch, inputs, hidden, seed=0):
    import lstm_numba as ln

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    calls, sizes = {}, {}
    for gate in GATES:
        size = hidden if gate == "lstm" else equal_hidden(gate, inputs, hidden)
        rnn = ln.LSTM(inputs, size, dtype="float32", seed=seed, gate=gate)
        sizes[gate] = (size, sum(v.size for v in rnn.state_dict().values()))
        dy = rng.standard_normal((steps, batch, size)).astype(np.float32)

        def forward(rnn=rnn):
            rnn(x, need_grad=False)

        def forward_backward(rnn=rnn, dy=dy):
            rnn(x, need_grad=True)
            rnn.backward(dy)

        calls[gate] = {"forward": forward, "forward+backward": forward_backward}
    return calls, sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 500, 1000, 4000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inputs", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64, help="the LSTM's hidden size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--pause", type=float, default=0.3)
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON ('-': stdout)")
    args = parser.parse_args(argv)
    out = sys.stderr if args.json == "-" else sys.stdout

    cpu = machine.cpu_model()
    print(f"CPU: {cpu['model']}; ISA: {' '.join(cpu['isa']) or '?'}; LLVM target {cpu['llvm_cpu']}", file=out)
    threads = machine.threads_info()
    print(f"threads: numba {threads['numba']}, {threads['cpus']} CPUs; "
          + "  ".join(f"{k}={v}" for k, v in machine.env_settings().items() if v is not None), file=out)
    rows = []
    for steps in args.steps:
        calls, sizes = build(steps, args.batch, args.inputs, args.hidden)
        if not rows:
            print("parameters: " + ", ".join(f"{g} H={h} ({n})" for g, (h, n) in sizes.items())
                  + f"; B={args.batch}, I={args.inputs}, float32", file=out)
            print(f"{'T':>6} {'mode':<17}" + "".join(f"{g + ' ms':>12}" for g in GATES)
                  + "".join(f"{'lstm/' + g:>14}" for g in GATES[1:]), file=out)
        for mode in MODES:
            for gate in GATES:
                calls[gate][mode]()  # compile / warm
            samples = interleaved_samples({g: calls[g][mode] for g in GATES}, args.rounds, args.calls, args.pause)
            median = {g: 1e3 * statistics.median(samples[g]) for g in GATES}
            row = {"T": steps, "mode": mode, **{f"{g}_ms": median[g] for g in GATES},
                   **{f"ratio_{g}": median["lstm"] / median[g] for g in GATES[1:]}}
            rows.append(row)
            print(f"{steps:>6} {mode:<17}" + "".join(f"{median[g]:>12.2f}" for g in GATES)
                  + "".join(f"{row['ratio_' + g]:>14.2f}" for g in GATES[1:]), file=out, flush=True)
    if args.json:
        text = json.dumps({"cpu": cpu, "threads": threads, "rows": rows}, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as handle:
                handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
