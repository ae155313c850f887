#!/usr/bin/env python
"""sLSTM with 1 head against 4 heads: forward+backward, float32, one process.

    .venv/bin/python benchmarks/bench_slstm_heads.py                 # T=50 B=32 I=64 H=256
    .venv/bin/python benchmarks/bench_slstm_heads.py --hidden 128 --rounds 3

Both layers have the same sizes; ``num_heads=4`` makes W_hh block-diagonal. The engine
still runs the recurrent GEMM on the dense (4H, H) matrix that the heads' blocks expand to
(docs/variants.md), so the ratio shows what heads cost today, not a per-head GEMM's saving.
Medians of alternating blocks (``lstm_numba.profiling.timing.interleaved_samples``) and the
ratio heads-1 / heads-4 (above 1: the heads are faster).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import lstm_numba as ln
from lstm_numba.profiling.timing import interleaved_samples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    x = np.random.default_rng(0).standard_normal((args.T, args.batch, args.inputs)).astype(np.float32)
    layers = {f"heads={n}": ln.LSTM(args.inputs, args.hidden, gate="slstm", num_heads=n, seed=1)
              for n in (1, args.heads)}

    def run(rnn):
        def call():
            y, _ = rnn(x)
            rnn.backward(y)
        return call

    samples = interleaved_samples({k: run(r) for k, r in layers.items()}, args.rounds, 2, 0.1)
    medians = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
    for key, ms in medians.items():
        print(f"{key:10s} forward+backward median {ms:8.2f} ms  (T={args.T} B={args.batch} I={args.inputs} "
              f"H={args.hidden})")
    one, many = medians["heads=1"], medians[f"heads={args.heads}"]
    print(f"ratio heads=1 / heads={args.heads}: {one / many:.2f}")


if __name__ == "__main__":
    main()
