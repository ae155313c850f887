#!/usr/bin/env python
"""Streaming inference latency: ``LSTM.step`` against ``torch.nn.LSTMCell``, one process,
same thread count, float32, one layer, small sizes.

    .venv/bin/python benchmarks/bench_streaming.py
    .venv/bin/python benchmarks/bench_streaming.py --batch 1 8 --hidden 64 --chunk 16 --json -

For each (B, I, H) it times, in alternating blocks (``lstm_numba.profiling.timing.
interleaved_samples``, as the other benchmarks do):

  step      ``y, state = rnn.step(x_t, state)``, one step of (B, I) per call, against
            ``h, c = cell(x_t, (h, c))`` under ``torch.no_grad()``;
  chunk     ``rnn.step(x_chunk, state)`` with ``--chunk`` steps per call, against
            ``torch.nn.LSTM`` over the same chunk from the carried state; per step.

Median (and minimum) microseconds per step, and the ratio torch / ours (above 1: we are
faster). Before timing, 20 streamed steps of ours are checked against torch's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

from lstm_numba.profiling.timing import interleaved_samples


def build(batch, inputs, hidden, chunk, seed=0):
    import numba
    import torch

    import lstm_numba as ln

    torch.set_num_threads(numba.get_num_threads())
    rnn = ln.LSTM(inputs, hidden, dtype="float32", seed=seed).eval()
    weights = {k: torch.from_numpy(v.copy()) for k, v in rnn.state_dict().items()}
    cell = torch.nn.LSTMCell(inputs, hidden)
    cell.load_state_dict({k[:-3]: v for k, v in weights.items()})  # weight_ih_l0 -> weight_ih
    seq = torch.nn.LSTM(inputs, hidden)
    seq.load_state_dict(weights)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((64, batch, inputs)).astype(np.float32)
    xt = torch.from_numpy(x)

    # parity: 20 single steps
    state, h, c = rnn.initial_state(batch), torch.zeros(batch, hidden), torch.zeros(batch, hidden)
    worst = 0.0
    with torch.no_grad():
        for t in range(20):
            y, state = rnn.step(x[t], state)
            h, c = cell(xt[t], (h, c))
            worst = max(worst, float(np.abs(y - h.numpy()).max()))

    ours = {"state": rnn.initial_state(batch), "t": 0}
    theirs = {"h": torch.zeros(batch, hidden), "c": torch.zeros(batch, hidden), "t": 0}
    hc = {"state": (torch.zeros(1, batch, hidden), torch.zeros(1, batch, hidden))}

    def ours_step():
        t = ours["t"] = (ours["t"] + 1) % 64
        _, ours["state"] = rnn.step(x[t], ours["state"])

    def torch_step():
        t = theirs["t"] = (theirs["t"] + 1) % 64
        with torch.no_grad():
            theirs["h"], theirs["c"] = cell(xt[t], (theirs["h"], theirs["c"]))

    def ours_chunk():
        _, ours["state"] = rnn.step(x[:chunk], ours["state"])

    def torch_chunk():
        with torch.no_grad():
            _, hc["state"] = seq(xt[:chunk], hc["state"])

    return worst, {"ours step": ours_step, "torch LSTMCell": torch_step,
                   "ours chunk": ours_chunk, "torch LSTM chunk": torch_chunk}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--inputs", type=int, default=32)
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--json", default=None, help="write the results as JSON to this path ('-': stdout)")
    args = parser.parse_args(argv)

    import numba
    import torch

    import lstm_numba as ln

    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"lstm-numba {ln.__version__}, torch {torch.__version__}, numba {numba.__version__}, "
          f"threads {numba.get_num_threads()} (torch {torch.get_num_threads()} after set)", file=out)
    print(f"{'B':>4} {'I':>4} {'H':>4}  {'mode':<6} {'ours us/step':>16} {'torch us/step':>16} {'torch/ours':>10}"
          f"  parity", file=out)
    results = []
    for hidden in args.hidden:
        for batch in args.batch:
            worst, fns = build(batch, args.inputs, hidden, args.chunk)
            samples = interleaved_samples(fns, args.rounds, args.calls, args.pause)
            med = {k: 1e6 * statistics.median(v) for k, v in samples.items()}
            low = {k: 1e6 * min(v) for k, v in samples.items()}
            for mode, ours_key, torch_key, per in (("step", "ours step", "torch LSTMCell", 1),
                                                   ("chunk", "ours chunk", "torch LSTM chunk", args.chunk)):
                row = dict(batch=batch, inputs=args.inputs, hidden=hidden, mode=mode, steps_per_call=per,
                           ours_us=med[ours_key] / per, ours_min_us=low[ours_key] / per,
                           torch_us=med[torch_key] / per, torch_min_us=low[torch_key] / per,
                           ratio=med[torch_key] / med[ours_key], parity_max_abs_err=worst)
                results.append(row)
                print(f"{batch:>4} {args.inputs:>4} {hidden:>4}  {mode:<6} "
                      f"{row['ours_us']:>8.1f} ({row['ours_min_us']:>5.1f}) "
                      f"{row['torch_us']:>8.1f} ({row['torch_min_us']:>5.1f}) {row['ratio']:>10.2f}  {worst:.1e}",
                      file=out)
    if args.json:
        text = json.dumps({"chunk": args.chunk, "rounds": args.rounds, "calls": args.calls, "results": results},
                          indent=2)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as handle:
                handle.write(text + "\n")


if __name__ == "__main__":
    main()
