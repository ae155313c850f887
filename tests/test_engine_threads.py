"""The direction passes' thread count follows the cores other processes leave free
(``lstm_numba.engine.threads``). The load is given as ``/proc/stat`` texts written here, so
the expected counts follow from the numbers in the test, not from the machine."""

from __future__ import annotations

import os

import pytest

from lstm_numba.engine import threads as th


def stat_text(per_cpu: dict) -> str:
    """A ``/proc/stat`` with ``{cpu: (busy, idle)}`` ticks (user, nice, system, idle, iowait,
    irq, softirq, steal)."""
    total_busy = sum(b for b, _ in per_cpu.values())
    total_idle = sum(i for _, i in per_cpu.values())
    lines = [f"cpu  {total_busy} 0 0 {total_idle} 0 0 0 0 0 0"]
    lines += [f"cpu{n} {b // 2} 0 {b - b // 2} {i} 0 0 0 0 0 0" for n, (b, i) in sorted(per_cpu.items())]
    return "\n".join(lines + ["intr 1 2 3", "ctxt 99", "btime 1"]) + "\n"


def test_counters_sum_the_cores_this_process_may_run_on_only():
    text = stat_text({0: (30, 70), 1: (50, 50), 2: (100, 0)})
    r = th.read_counters(text, frozenset({0, 1}), own_cpu_s=1.5, wall_s=7.0)
    assert (r.busy_ticks, r.total_ticks, r.own_cpu_s, r.wall_s) == (80, 200, 1.5, 7.0)


@pytest.mark.parametrize("others_busy, own_s, expected_free", [
    (0, 0.0, 2.0),      # idle machine
    (100, 0.0, 1.0),    # one core busy with another process
    (200, 0.0, 0.0),    # both
    (200, 1.0, 1.0),    # both busy, one of them with this process's own threads
    (150, 0.5, 1.0),
])
def test_free_cores_count_other_processes_work_only(others_busy, own_s, expected_free):
    before = th.Reading(busy_ticks=1000, total_ticks=5000, own_cpu_s=2.0, wall_s=0.0)
    after = th.Reading(busy_ticks=1000 + others_busy, total_ticks=5200, own_cpu_s=2.0 + own_s, wall_s=1.0)
    assert th.free_cores(before, after, n_cpus=2, ticks_per_s=100.0) == pytest.approx(expected_free)


@pytest.mark.parametrize("free, cap, expected", [(2.0, 2, 2), (1.55, 2, 2), (1.45, 2, 1), (1.0, 2, 1),
                                                 (0.0, 2, 1), (8.0, 4, 4), (3.6, 8, 4)])
def test_thread_count_is_the_free_cores_within_the_cap(free, cap, expected):
    assert th.threads_for(free, cap) == expected


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_monitor_rereads_the_load_only_after_the_interval(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    cpus = sorted(os.sched_getaffinity(0))
    clock = FakeClock()
    _write(stat, {c: (0, 0) for c in cpus})
    watch = th.CoreMonitor(str(stat), clock=clock)
    monkeypatch.setattr(th.os, "times", lambda: _Times(0.0))
    # every core fully busy with other processes over the next interval
    _write(stat, {c: (100, 0) for c in cpus})
    clock.now = th.SAMPLE_INTERVAL_S / 2
    assert watch.update() == len(cpus)  # too soon: the last decision stands
    clock.now = th.SAMPLE_INTERVAL_S
    assert watch.update() == pytest.approx(0.0)
    _write(stat, {c: (100, 100) for c in cpus})  # then idle again
    clock.now = 2 * th.SAMPLE_INTERVAL_S
    assert watch.update() == pytest.approx(len(cpus))


class _Times:
    def __init__(self, cpu_s):
        self.user, self.system = cpu_s, 0.0


def _write(path, per_cpu):
    path.write_text(stat_text(per_cpu))
    return path


class FixedMonitor:
    def __init__(self, free):
        self.free, self.cpus = free, frozenset({0, 1})

    def update(self):
        return self.free


class FakeNumba:
    """Numba's thread count as the decorator sees it (the test workers run Numba on one
    thread, so the real count cannot change here)."""

    def __init__(self, threads):
        self.threads, self.set_calls = threads, []

    def get_num_threads(self):
        return self.threads

    def set_num_threads(self, n):
        self.set_calls.append(n)
        self.threads = n


def test_a_pass_runs_on_the_free_cores_and_gives_the_callers_count_back(monkeypatch):
    fake = FakeNumba(2)
    monkeypatch.setattr(th, "numba", fake)
    seen = []
    passes = th.adaptive(lambda: seen.append(fake.get_num_threads()) or "result")
    monkeypatch.setattr(th, "monitor", lambda: FixedMonitor(1.0))
    assert passes() == "result"
    assert fake.threads == 2 and fake.set_calls == [1, 2]
    monkeypatch.setattr(th, "monitor", lambda: FixedMonitor(2.0))
    passes()
    monkeypatch.setattr(th, "monitor", lambda: None)  # adaptation off
    passes()
    assert seen == [1, 2, 2] and fake.set_calls == [1, 2]
    monkeypatch.setattr(th, "monitor", lambda: FixedMonitor(1.0))
    with pytest.raises(ZeroDivisionError):
        th.adaptive(lambda: 1 / 0)()
    assert fake.threads == 2  # given back after an error too
    assert th.chosen_threads() == (1, "1.0 of 2 cores free of other processes, cap 2")


def test_the_environment_variable_turns_adaptation_off(monkeypatch):
    th.monitor.cache_clear()
    monkeypatch.setenv(th.ADAPTIVE_ENV, "0")
    try:
        assert th.monitor() is None
        assert "LSTM_NUMBA_ADAPTIVE_THREADS=0" in th.chosen_threads()[1]
    finally:
        th.monitor.cache_clear()
