"""Synchronous data-parallel training: shards of every global batch, computed in this
process or on a Dask cluster, their gradients summed in shard order, one optimizer step.

    from distributed import Client
    trainer = Trainer(TrainConfig(shards=4), client=Client("tcp://host:8786"))
    trainer.fit(checkpoint="runs/co2.npz")

**Shards** (:mod:`lstm_numba.training.shards`): each global batch is cut into
``TrainConfig.shards`` parts by a fixed rule, every path computes a part with the same
:func:`~lstm_numba.training.shards.shard_gradient`, and the parts are summed in shard
order, so a run depends on the seed and the number of shards only.

**The cluster** (:class:`ClusterShards`, chosen after measuring; see docs/dask.md). One
Dask actor per worker lives for the run (as xgboost and LightGBM keep one long-running
task per worker): it holds the task's data and a model, and each step it receives the
weights, computes the shards assigned to it (shard ``i`` of the live shards goes to the
``i % W``-th worker by address) and returns their results. The driver sums, clips and
steps the optimizer; the weights travel with the next step's call. Actor calls go
straight from the client to the worker, not through the scheduler: measured with the
weights of a medium model (H=256, I=128) on two local workers, 11 ms per step against
22 ms for per-step tasks with scattered weights. :attr:`ClusterShards.stats` records the
per-step overhead (the step's wall time less its slowest worker's compute).

**Faults.** A worker lost during a step (its actor call fails, or the scheduler stops
listing it while the call waits) is dropped and its shards
are computed again by the workers left, from the same weights, in the same step: no step
is lost or repeated, and since a shard's result does not depend on where it runs, the
final weights equal an uninterrupted run's. Workers that join (a nanny's restart, a new
``dask worker``) are adopted at the next epoch. With no worker left the run waits
``wait_s`` for one, then stops with :class:`ClusterError`; the last checkpoint resumes it.

**Plugins.** Before training, every worker reports lstm-numba's version and the
distribution and version of each plugin the model runs; a worker lacking one, or with
another version, stops the run with one line naming the worker and the plugin.

Dask (``pip install "lstm-numba[dask]"``) is imported only by the cluster classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from lstm_numba.nn.models import build_model
from lstm_numba.training.config import TrainingError
from lstm_numba.training.shards import live_shards, shard_gradient, sum_shards

LOG = logging.getLogger("lstm_numba.distributed")

#: How long a shard may lose its worker in one step before the run gives up.
MAX_LOSSES_PER_SHARD = 3


class ClusterError(TrainingError):
    """The cluster cannot run this training (missing plugin, no workers left)."""


# --------------------------------------------------------------------------- workers
def _set_threads(threads: int) -> None:
    """Numba threads for this thread's kernels: the Dask worker's thread count."""
    import numba

    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


class ShardActor:
    """Lives on one worker for a run (a Dask actor): the task's data, a model, and the
    shard computation. Errors come back as values, so that any exception the client sees
    from a call means the worker was lost."""

    def __init__(self, task, model_config: dict, n_shards: int, seed: int, threads: int):
        self.threads = threads
        _set_threads(threads)
        self.task = task
        self.model = build_model(model_config)
        self.model.train()
        self.n_shards, self.seed = n_shards, seed

    def compute(self, weights: dict, batch, shards: list, step: int, states: dict):
        _set_threads(self.threads)
        try:
            self.model.load_state_dict(weights)
            return "ok", [shard_gradient(self.task, self.model, batch, s, self.n_shards, step,
                                         self.seed, states.get(s)) for s in shards]
        except Exception as exc:  # noqa: BLE001 - sent back and raised on the driver
            return "error", exc, traceback.format_exc()


def _plugin_kind(role: str) -> str:
    return "gate" if role == "gate" else "activation"


def worker_report(needed: dict) -> dict:
    """Run on a worker: its lstm-numba version and, for each plugin in ``needed`` (a model's
    ``plugins``), the distribution and version installed there or why it cannot load."""
    from lstm_numba import registry
    from lstm_numba.config import package_version

    found = {}
    for role, info in needed.items():
        try:
            entry = registry.REGISTRY.get(_plugin_kind(role), info["name"])
            found[role] = {"distribution": entry.distribution, "version": entry.version}
        except Exception as exc:  # noqa: BLE001 - reported, one line
            found[role] = {"error": " ".join(str(exc).split())}
    return {"lstm-numba": package_version(), "plugins": found}


def _mismatch(address: str, report: dict, needed: dict, version: str) -> str | None:
    """One line naming the worker and the first plugin it cannot run as this run needs."""
    for role, want in needed.items():
        kind, name = _plugin_kind(role), want["name"]
        what = f"{kind} plugin {name!r}" + ("" if role in ("gate", "activation") else f" ({role})")
        have = report["plugins"].get(role, {"error": "not reported"})
        wanted = f"{want.get('distribution')} {want.get('version')}"
        if "error" in have:
            return f"worker {address}: cannot load the {what} this run needs ({wanted}): {have['error']}"
        if (have["distribution"], have["version"]) != (want.get("distribution"), want.get("version")):
            return (f"worker {address}: {what} is {have['distribution']} {have['version']} there; "
                    f"this run needs {wanted}")
    if report["lstm-numba"] != version:
        return f"worker {address}: runs lstm-numba {report['lstm-numba']}; this run needs {version}"
    return None


def plugin_mismatches(client, needed: dict, workers) -> dict:
    """``{address: line}`` for each of ``workers`` that cannot run a model needing ``needed``."""
    from lstm_numba.config import package_version

    reports = client.run(worker_report, needed, workers=list(workers))
    version = package_version()
    bad = {}
    for address in sorted(reports):
        line = _mismatch(address, reports[address], needed, version)
        if line:
            bad[address] = line
    return bad


def check_workers(client, needed: dict, workers) -> None:
    """Raise :class:`ClusterError` (one line, naming the worker and the plugin) unless every
    one of ``workers`` has lstm-numba and each plugin in ``needed`` as this process has."""
    bad = plugin_mismatches(client, needed, workers)
    if bad:
        first = next(iter(bad.values()))
        raise ClusterError(first + (f" (and {len(bad) - 1} more workers)" if len(bad) > 1 else ""))


def worker_threads(client, workers=None) -> dict:
    """``{address: threads}`` of the cluster's workers (only ``workers`` when given)."""
    found = client.nthreads()
    return {a: n for a, n in sorted(found.items()) if workers is None or a in workers}


@dataclass
class StepStats:
    """Per-step timings of a cluster run (the first step, which loads kernels, and steps
    that recovered from a lost worker are counted apart)."""

    step_s: list = field(default_factory=list)
    compute_s: list = field(default_factory=list)
    recovered: int = 0

    @property
    def overhead_s(self) -> list:
        return [s - c for s, c in zip(self.step_s, self.compute_s)]

    def summary(self) -> str:
        if not self.step_s:
            return "per-step overhead: no step measured"
        steps = self.step_s[1:] or self.step_s
        over = self.overhead_s[1:] or self.overhead_s
        mean_step, mean_over = float(np.mean(steps)), float(np.mean(over))
        text = (f"per-step overhead {mean_over * 1e3:.1f} ms ({mean_over / mean_step:.1%} of a "
                f"{mean_step * 1e3:.0f} ms step; mean of {len(steps)} steps)")
        if self.recovered:
            text += f"; recovered from {self.recovered} lost worker(s)"
        return text


class ClusterShards:
    """The shards of every step computed by one :class:`ShardActor` per Dask worker.

    ``workers`` limits the run to those addresses. ``on_dispatch(step, addresses)``, when
    set, is called after a step's calls are sent and before their results are awaited
    (fault-injection tests kill a worker there)."""

    def __init__(self, client, task, model, n_shards: int, seed: int, workers=None,
                 wait_s: float = 60.0):
        self.client, self.task = client, task
        self.model_config, self.needed = model.config(), model.plugins
        self.n_shards, self.seed, self.wait_s = int(n_shards), int(seed), float(wait_s)
        self.allowed = None if workers is None else set(workers)
        self.lost: set = set()
        self.actors: dict = {}   # address -> (actor, its future, the task's data future)
        self.states: dict = {}
        self.stats = StepStats()
        self.used: set = set()   # workers that returned shard results
        self.on_dispatch = None
        self.poll_s = 1.0        # how often a long call checks that its worker is still listed
        candidates = worker_threads(client, self.allowed)
        if not candidates:
            raise ClusterError("the Dask cluster has no workers" + (
                f" among {sorted(self.allowed)}" if self.allowed else ""))
        check_workers(client, self.needed, candidates)
        self.checked = set(candidates)

    @property
    def workers(self) -> list:
        return sorted(self.actors)

    def _adopt(self) -> None:
        """Start an actor on each usable worker that has none (plugin-checking newcomers)."""
        candidates = {a: n for a, n in worker_threads(self.client, self.allowed).items()
                      if a not in self.lost and a not in self.actors}
        unchecked = [a for a in candidates if a not in self.checked]
        if unchecked:
            with contextlib.suppress(Exception):  # a newcomer that dies meanwhile is skipped
                for address, line in plugin_mismatches(self.client, self.needed, unchecked).items():
                    LOG.warning("%s; not using it", line)
                    self.lost.add(address)
                self.checked.update(unchecked)
        started = {}
        for address, threads in candidates.items():
            if address in self.lost or address not in self.checked:
                continue
            try:
                data = self.client.scatter(self.task, workers=[address], hash=False, timeout=self.wait_s)
                started[address] = (data, self.client.submit(
                    ShardActor, data, self.model_config, self.n_shards, self.seed, threads,
                    actor=True, workers=[address], allow_other_workers=False, pure=False))
            except Exception as exc:  # noqa: BLE001 - the worker went away
                self._lose(address, exc)
        for address, (data, future) in started.items():
            try:
                self.actors[address] = (future.result(timeout=self.wait_s), future, data)
            except Exception as exc:  # noqa: BLE001
                self._lose(address, exc)

    def _lose(self, address, exc, step=None) -> None:
        self.lost.add(address)
        self.actors.pop(address, None)
        when = "" if step is None else f" at step {step + 1}"
        LOG.warning("worker %s lost%s (%s); continuing on %d worker(s)", address, when,
                    " ".join(str(exc).split()) or type(exc).__name__, len(self.actors))

    def _wait_for_workers(self, step: int) -> None:
        deadline = time.monotonic() + self.wait_s
        while True:
            self._adopt()
            if self.actors:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"no Dask worker left at step {step + 1} (waited {self.wait_s:g} s); "
                                   "the last checkpoint resumes the run (--resume)")
            time.sleep(0.5)

    def _await(self, address, call):
        """The reply of an actor call. Raises when the call fails, or as soon as the scheduler
        no longer lists the worker (a call to a dead worker may otherwise wait for Dask's
        30 s connect timeout)."""
        while True:
            try:
                return call.result(timeout=self.poll_s)
            except (TimeoutError, asyncio.TimeoutError):
                if address not in self.client.nthreads():
                    raise OSError(f"the scheduler no longer lists worker {address}") from None

    def start_epoch(self) -> None:
        self.states = {}
        self._adopt()

    def step(self, model, batch, step: int):
        if not self.actors:
            self._wait_for_workers(step)
        t0 = time.perf_counter()
        weights = model.state_dict()
        pending = live_shards(self.task, batch, self.n_shards)
        results, compute, losses, recovered = {}, {}, {}, False
        while pending:
            if not self.actors:
                self._wait_for_workers(step)
            addresses = self.workers
            plan = {a: pending[i::len(addresses)] for i, a in enumerate(addresses)}
            calls = {}
            for address, shards in plan.items():
                if not shards:
                    continue
                try:  # a call raises at once when Dask already knows the worker is gone
                    calls[address] = self.actors[address][0].compute(
                        weights, batch, shards, step, {s: self.states.get(s) for s in shards})
                except Exception as exc:  # noqa: BLE001
                    calls[address] = exc
            if self.on_dispatch is not None:
                self.on_dispatch(step, sorted(calls))
            for address, call in calls.items():
                try:
                    if isinstance(call, Exception):
                        raise call
                    reply = self._await(address, call)
                except Exception as exc:  # noqa: BLE001 - the worker or the way to it was lost
                    self._lose(address, exc, step)
                    recovered = True
                    for s in plan[address]:
                        losses[s] = losses.get(s, 0) + 1
                        if losses[s] >= MAX_LOSSES_PER_SHARD:
                            raise ClusterError(f"shard {s} lost its worker {losses[s]} times at step "
                                               f"{step + 1}; stopping") from None
                    continue
                if reply[0] == "error":
                    exc = reply[1]
                    if hasattr(exc, "add_note"):
                        exc.add_note(f"raised on Dask worker {address}:\n{reply[2]}")
                    raise exc
                self.used.add(address)
                for r in reply[1]:
                    results[r.shard] = r
                    compute[address] = compute.get(address, 0.0) + r.seconds
            pending = [s for s in pending if s not in results]
        for s, r in results.items():
            self.states[s] = r.state
        total = sum_shards(results.values())
        if recovered:
            self.stats.recovered += 1
        else:
            self.stats.step_s.append(time.perf_counter() - t0)
            self.stats.compute_s.append(max(compute.values()))
        return total

    def close(self) -> None:
        """Release the actors (and their copies of the data)."""
        self.actors.clear()


#: Dask settings of the clusters this module starts. The workers' statistical profiler
#: samples every thread's stack from a thread of its own every 10 ms; on a machine with no
#: idle core that thread competes with the shard computation for the core and for the GIL
#: between kernel calls (benchmarks/bench_dask.py on a quiet 2-core machine: 1.52x on 2 workers with it, 1.69-1.77x
#: without).
WORKER_SETTINGS = {"distributed.worker.profile.enabled": False}


def local_cluster(n_workers: int):
    """A ``LocalCluster`` of ``n_workers`` single-threaded worker processes with
    :data:`WORKER_SETTINGS`. The cluster's own warnings (a task that failed, a worker
    restarted) are expected here; the run reports what matters itself."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(WORKER_SETTINGS):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                       dashboard_address=":0", silence_logs=logging.ERROR)


@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None):
    """A Dask client for the scheduler at ``scheduler``, or for a ``LocalCluster`` of
    ``workers`` single-threaded worker processes started here and closed on exit; None
    when neither is given."""
    if scheduler is None and workers is None:
        yield None
        return
    if scheduler is not None and workers is not None:
        raise ValueError("give either a scheduler address or a number of workers, not both")
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError('running on a Dask cluster needs dask.distributed: pip install "lstm-numba[dask]"') from None
    cluster = None
    if scheduler is not None:
        client = Client(scheduler, timeout="30s")
    else:
        cluster = local_cluster(int(workers))
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
