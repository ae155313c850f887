"""How many Numba threads a direction pass runs on: the cores that are really free.

A parallel region waits for its slowest thread. When another process keeps a core busy,
the thread scheduled on that core is descheduled for whole time slices at every one of the
hundreds of fork-joins in a sequence, and two threads run slower than one: measured on a
2-core machine, ``lstm-numba train`` took 2.8 s on one thread and 5.6 s on two beside one
busy process, 3.9 s and 9.8 s beside two (docs/performance.md).

So each direction pass (:func:`adaptive`) runs on as many threads as there are cores that
other processes left idle, never more than ``numba.get_num_threads()`` (the user's or
``NUMBA_NUM_THREADS``'s cap) and never fewer than one. The busy share of each core this
process may run on comes from ``/proc/stat``, less this process's own CPU time over the
same interval, sampled at most every :data:`SAMPLE_INTERVAL_S` (a sample costs tens of
microseconds; between samples the last decision stands). The kernels give bitwise the same
results whatever their thread count, so the choice changes the speed only.

``LSTM_NUMBA_ADAPTIVE_THREADS=0`` turns this off (every pass runs on
``numba.get_num_threads()`` threads). Where ``/proc/stat`` does not exist (not Linux), it
is off.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass

import numba

#: Environment variable: ``0`` runs every pass on ``numba.get_num_threads()`` threads.
ADAPTIVE_ENV = "LSTM_NUMBA_ADAPTIVE_THREADS"

#: Seconds between two readings of the machine's load.
SAMPLE_INTERVAL_S = 0.25

#: A core counts as free when at most this share of it is busy with other processes: a
#: core another process uses now and then still pays (bench_load.py, beside other
#: engineers' intermittent test runs: two threads 0.51x of one thread's time), a core it
#: holds does not (3-4x one thread's time).
BUSY_TOLERANCE = 0.5

_PROC_STAT = "/proc/stat"
_IDLE_FIELDS = (3, 4)  # idle, iowait in a ``cpuN`` line's numbers (steal counts as busy)


@dataclass(frozen=True)
class Reading:
    """The CPU counters at one moment: busy and total clock ticks of the cores this
    process may run on, this process's CPU seconds, and the wall clock."""

    busy_ticks: int
    total_ticks: int
    own_cpu_s: float
    wall_s: float


def read_counters(stat_text: str, cpus: frozenset, own_cpu_s: float, wall_s: float) -> Reading:
    """A :class:`Reading` from the text of ``/proc/stat`` for the cores in ``cpus``."""
    busy = total = 0
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in rest.split()[:8]]
        idle = sum(ticks[i] for i in _IDLE_FIELDS)
        total += sum(ticks)
        busy += sum(ticks) - idle
    return Reading(busy, total, own_cpu_s, wall_s)


def free_cores(before: Reading, after: Reading, n_cpus: int, ticks_per_s: float) -> float:
    """Cores of ``n_cpus`` that other processes left idle between two readings."""
    total = after.total_ticks - before.total_ticks
    if total <= 0:
        return float(n_cpus)
    own_ticks = (after.own_cpu_s - before.own_cpu_s) * ticks_per_s
    others = max(0.0, (after.busy_ticks - before.busy_ticks) - own_ticks)
    return n_cpus * (1.0 - min(1.0, others / total))


def threads_for(free: float, cap: int) -> int:
    """Threads to run on ``free`` idle cores: every core at most :data:`BUSY_TOLERANCE`
    busy, at least one, at most ``cap``."""
    return max(1, min(int(cap), int(free + BUSY_TOLERANCE)))


class CoreMonitor:
    """Reads the machine's load every :data:`SAMPLE_INTERVAL_S` and keeps the last
    decision (thread-safe)."""

    def __init__(self, stat_path: str = _PROC_STAT, clock=time.monotonic):
        self.stat_path, self.clock = stat_path, clock
        self.cpus = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else frozenset(range(os.cpu_count() or 1))
        self.ticks_per_s = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._lock = threading.Lock()
        self._last = self._read()
        self.free = float(len(self.cpus))

    def _read(self) -> Reading:
        with open(self.stat_path) as f:
            text = f.read()
        times = os.times()
        return read_counters(text, self.cpus, times.user + times.system, self.clock())

    def update(self) -> float:
        """The free cores, re-read when the last reading is older than the interval."""
        with self._lock:
            if self.clock() - self._last.wall_s >= SAMPLE_INTERVAL_S:
                now = self._read()
                self.free = free_cores(self._last, now, len(self.cpus), self.ticks_per_s)
                self._last = now
            return self.free


@functools.cache
def monitor() -> CoreMonitor | None:
    """The process's monitor, or None when adaptation is off or ``/proc/stat`` is missing."""
    if os.environ.get(ADAPTIVE_ENV, "1").strip() == "0" or not os.path.exists(_PROC_STAT):
        return None
    return CoreMonitor()


def _threads(cap: int) -> int:
    watch = monitor()
    return cap if watch is None else threads_for(watch.update(), cap)


def chosen_threads() -> tuple[int, str]:
    """``(threads, why)``: what the next direction pass runs on, and the reason in words."""
    cap = numba.get_num_threads()
    watch = monitor()
    if watch is None:
        why = f"{ADAPTIVE_ENV}=0" if os.environ.get(ADAPTIVE_ENV, "1").strip() == "0" else "no /proc/stat"
        return cap, f"fixed at numba.get_num_threads() ({why})"
    free = watch.update()
    return threads_for(free, cap), f"{free:.1f} of {len(watch.cpus)} cores free of other processes, cap {cap}"


def adaptive(function):
    """Run ``function`` (a direction pass) on :func:`chosen_threads`' thread count, and put
    the caller's count back afterwards."""

    @functools.wraps(function)
    def run_on_free_cores(*args, **kwargs):
        cap = numba.get_num_threads()
        threads = _threads(cap)
        if threads == cap:
            return function(*args, **kwargs)
        numba.set_num_threads(threads)
        try:
            return function(*args, **kwargs)
        finally:
            numba.set_num_threads(cap)

    return run_on_free_cores
