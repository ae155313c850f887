"""Data-parallel training on a local Dask cluster: samples per second of a medium model
(T=100, I=128, H=256, float32, one LSTM layer, sequence classification) with a global batch
of 256, on 1 worker and on 2 workers (one thread each), the speed-up and the per-step
overhead (a step's wall time less its slowest worker's compute: sending the weights,
returning the shard gradients, summing them).

    .venv/bin/python benchmarks/bench_dask.py [--steps 8] [--warmup 1] [--json PATH]

One ``LocalCluster(n_workers=2, threads_per_worker=1)`` serves both measurements; the
1-worker run uses one of its workers (1 shard), the 2-worker run both (2 shards). Each
timed step is what ``Trainer.fit`` does per batch: the shards' forward and backward on the
workers, the ordered sum, and the Adam step on the driver. The two configurations take
their steps in alternation (the order reversed every other round), so that a change in the
machine's load falls on both, and the figures are medians. The first ``--warmup`` steps
(kernel loading) are not timed. A busy machine slows everything: the load average is
printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

T, I, H, BATCH = 100, 128, 256, 256


def write_data(directory: str, n: int) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (n, T, I)).astype(np.float32)
    y = rng.integers(0, 4, n)
    path = os.path.join(directory, "medium.npz")
    np.savez(path, x=x, y=y, lengths=np.full(n, T))
    return path


class Setup:
    """One configuration (a Trainer on ``workers``, one shard each) and its step timings."""

    def __init__(self, client, data: str, workers: list):
        from lstm_numba.training.config import TrainConfig
        from lstm_numba.training.trainer import Trainer

        cfg = TrainConfig(data=data, task="classify", hidden_size=H, batch_size=BATCH, epochs=1,
                          val_fraction=0.05, shards=len(workers), clip_grad=None)
        self.trainer = Trainer(cfg, client=client, workers=workers)
        self.workers, self.n_shards = len(workers), cfg.shards
        self.shards = self.trainer.shards
        self.shards.start_epoch()
        batches = self.trainer.task.batches(self.trainer.shuffle_rng, BATCH)
        self.batches = [b for b in batches if len(b) == BATCH]
        self.times: list = []

    def step(self, k: int) -> None:
        t0 = time.perf_counter()
        _, grads, _ = self.shards.step(self.trainer.model, self.batches[k % len(self.batches)], k)
        self.trainer.optimizer.step(grads)
        self.times.append(time.perf_counter() - t0)

    def result(self, warmup: int) -> dict:
        stats = self.shards.stats
        step_s, over = np.median(self.times[warmup:]), np.median(stats.overhead_s[warmup:])
        return {"workers": self.workers, "shards": self.n_shards, "steps": len(self.times) - warmup,
                "samples_per_s": BATCH / step_s, "step_s": float(step_s), "overhead_ms": 1e3 * float(over),
                "overhead_share": float(over / np.median(stats.step_s[warmup:])),
                "recovered": stats.recovered}


def measure(client, data: str, addresses: list, steps: int, warmup: int) -> list:
    """Steps of the 1-worker and the 2-worker configuration in alternation (the order
    reversed every other round), so that a change in the machine's load falls on both;
    medians of the timed steps."""
    setups = [Setup(client, data, addresses[:1]), Setup(client, data, addresses)]
    try:
        for k in range(warmup + steps):
            for setup in (setups if k % 2 == 0 else setups[::-1]):
                setup.step(k)
        return [s.result(warmup) for s in setups]
    finally:
        for s in setups:
            s.shards.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--json", default=None, help="also write the results here ('-': stdout)")
    args = parser.parse_args(argv)

    import distributed
    import numba

    from lstm_numba.config import package_version
    from lstm_numba.training.distributed import local_cluster

    print(f"lstm-numba {package_version()}, numba {numba.__version__}, dask {distributed.__version__}, "
          f"{os.cpu_count()} CPUs; load average before {os.getloadavg()[0]:.2f}")
    print(f"model: LSTM T={T} I={I} H={H} float32, classify, global batch {BATCH}, Adam")
    with tempfile.TemporaryDirectory() as tmp, \
            local_cluster(2) as cluster, \
            distributed.Client(cluster) as client:
        data = write_data(tmp, 4 * BATCH)
        addresses = sorted(client.nthreads())
        results = measure(client, data, addresses, args.steps, args.warmup)
    for r in results:
        print(f"{r['workers']} worker(s), {r['shards']} shard(s): {r['samples_per_s']:8.1f} samples/s, "
              f"{r['step_s'] * 1e3:7.0f} ms/step, per-step overhead {r['overhead_ms']:6.1f} ms "
              f"({r['overhead_share']:.1%} of the step)")
    speedup = results[1]["samples_per_s"] / results[0]["samples_per_s"]
    print(f"speed-up on 2 workers: {speedup:.2f}x (target >= 1.8x); load average after "
          f"{os.getloadavg()[0]:.2f}")
    if args.json:
        doc = json.dumps({"results": results, "speedup": speedup, "loadavg": os.getloadavg()}, indent=2)
        if args.json == "-":
            print(doc)
        else:
            with open(args.json, "w") as f:
                f.write(doc + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
