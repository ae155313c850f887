"""Shards of a global batch: the process-independent half of synchronous data parallelism
(:mod:`lstm_numba.training.distributed` runs the shards on a Dask cluster).

**Shards.** ``TrainConfig.shards`` = S cuts each global batch the trainer draws (the
same batches, in the same order, as an unsharded run) into S parts by a fixed rule
(:func:`shard_part`: ``numpy.array_split`` of the batch's rows; for the character LM, of
its parallel streams). :func:`shard_gradient` computes one part's loss and gradients
scaled by the part's share of the global batch, so that the shard sums are the global
batch's mean; its dropout masks come from ``derive_seed(seed, "dropout/<step>/<shard>")``.
:func:`sum_shards` adds the parts in shard-index order, never in arrival order. Every
path (:class:`InProcessShards`, and ``distributed.ShardActor`` on a worker) calls the same
:func:`shard_gradient`, and the engine's kernels give bitwise the same results whatever
their thread count, so a run depends on the seed and S only: one process or 1, 2 or 4
workers give bitwise the same weights (on machines with the same CPU and packages). An
unsharded run sums in another order and agrees to float rounding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lstm_numba.nn.models import derive_seed


@dataclass
class ShardResult:
    """One shard's contribution to a step; ``loss`` and ``grads`` are already scaled by the
    shard's share of the global batch."""

    shard: int
    loss: float
    grads: dict
    n: int
    state: object = None   # charlm: the shard's streams' recurrent state after the chunk
    seconds: float = 0.0   # compute time where it ran


def _streams(task) -> int | None:
    """The character LM's number of parallel streams (its shards split them); else None."""
    return task.stream.shape[1] if hasattr(task, "train_streams") else None


def shard_part(task, batch, shard: int, n_shards: int):
    """``(part, weight)``: shard ``shard`` of the global ``batch`` and its share of it.

    Rows (forecast, classify) or streams (charlm) are cut by ``numpy.array_split`` into
    ``n_shards`` contiguous parts whose sizes differ by at most one; a part may be empty
    when the last batch of an epoch has fewer rows than there are shards."""
    streams = _streams(task)
    if streams is not None:
        part = np.array_split(np.arange(streams), n_shards)[shard]
        return part, len(part) / streams
    rows = np.asarray(batch)
    part = np.array_split(rows, n_shards)[shard]
    return part, len(part) / len(rows)


def live_shards(task, batch, n_shards: int) -> list[int]:
    """The shards of ``batch`` that hold at least one row."""
    return [s for s in range(n_shards) if len(shard_part(task, batch, s, n_shards)[0])]


def dropout_seed(seed: int, step: int, shard: int) -> int:
    """The seed of a shard's dropout masks at (0-based) optimizer step ``step``."""
    return derive_seed(seed, f"dropout/{step}/{shard}")


def shard_gradient(task, model, batch, shard: int, n_shards: int, step: int, seed: int,
                   state=None) -> ShardResult:
    """Forward and backward of one shard with ``model``'s current weights: the one function
    both the in-process path and the workers call."""
    t0 = time.perf_counter()
    part, weight = shard_part(task, batch, shard, n_shards)
    model.rnn.rng.bit_generator.state = np.random.default_rng(
        dropout_seed(seed, step, shard)).bit_generator.state
    if _streams(task) is not None:
        loss, grads, n, state = task.train_streams(model, batch, part, state)
    else:
        loss, grads, n = task.train_step(model, part)
    scale = model.dtype.type(weight)
    grads = {key: g * scale for key, g in grads.items()}
    return ShardResult(shard, float(loss) * weight, grads, n, state, time.perf_counter() - t0)


def sum_shards(results) -> tuple[float, dict, int]:
    """``(loss, grads, n)`` of a step: the shard results added in shard-index order (the
    order they arrived in does not matter)."""
    ordered = sorted(results, key=lambda r: r.shard)
    if not ordered:
        raise ValueError("no shard results to sum")
    if len({r.shard for r in ordered}) != len(ordered):
        raise ValueError("a shard appears twice among the results")
    first = ordered[0]
    grads = {key: g.copy() for key, g in first.grads.items()}
    loss, n = first.loss, first.n
    for r in ordered[1:]:
        for key, g in grads.items():
            g += r.grads[key]
        loss += r.loss
        n += r.n
    return loss, grads, n


class InProcessShards:
    """Every shard computed here, one after the other, with the trainer's own model."""

    def __init__(self, task, n_shards: int, seed: int):
        self.task, self.n_shards, self.seed = task, int(n_shards), int(seed)
        self.states = {}
        self.stats = None

    def start_epoch(self) -> None:
        self.states = {}

    def step(self, model, batch, step: int):
        results = [shard_gradient(self.task, model, batch, s, self.n_shards, step, self.seed,
                                  self.states.get(s))
                   for s in live_shards(self.task, batch, self.n_shards)]
        self.states.update({r.shard: r.state for r in results})
        return sum_shards(results)

    def close(self) -> None:
        pass
