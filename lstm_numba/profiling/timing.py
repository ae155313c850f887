"""Timing helpers: medians, timed calls with a warm-up, and alternating blocks of
implementations so that a noisy, shared machine slows each alike.
"""

from __future__ import annotations

import statistics
import time

#: Seconds of sleep before each block of the comparison with torch. Thread pools left
#: spinning by one implementation slow the next (docs/performance.md), but the block's
#: warm-up (:data:`BLOCK_WARMUP_S`) absorbs that: measured 2026-11-29, 2 threads, blocks of
#: 2 calls after 30 ms of warm-up, each right after 3 calls of the other implementation,
#: medians of forward+backward over pauses of 0, 0.02, 0.1, 0.25 and 0.75 s: T=50 B=32 I=32
#: H=64, ours 0.79-0.81 ms and torch 1.08-1.11; T=100 B=64 I=128 H=256, ours 42.7-43.3 and
#: torch 60.2-60.7, with no trend in the pause. Short, so that --repeat rounds stay quick.
COMPARE_PAUSE_S = 0.1


#: Timed calls per block in the comparison with torch (``repeat`` rounds of blocks).
COMPARE_CALLS = 2


def median_ms(samples) -> float:
    return 1e3 * statistics.median(samples)


def time_calls(fn, repeat: int, warmup: int = 1, warmup_s: float = 0.0) -> list[float]:
    """Seconds per call of ``fn()`` over ``repeat`` calls after untimed ones: ``warmup``
    calls, and more until ``warmup_s`` seconds have passed."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    while time.perf_counter() - start < warmup_s:
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


#: Seconds of untimed calls that start each block of :func:`interleaved_samples`. For
#: about 10 ms after a pause, every implementation runs slower on these 2-vCPU machines:
#: small forward+backward (T=50, B=32, I=32, H=64), the first call after a 0.75 s pause
#: took about 1.7 ms (ours) and 2.4-3.0 (torch), calls 20-39 about 0.81 and 1.10-1.19 ms.
#: A training loop calls back to back, so the blocks time that steady state.
BLOCK_WARMUP_S = 0.03


def interleaved_samples(fns: dict, rounds: int, calls: int, pause_s: float,
                        warmup_s: float = BLOCK_WARMUP_S) -> dict:
    """Seconds per call of each ``fns[key]()``, timed in alternating blocks.

    Each round runs one block per implementation, in the order of ``fns`` in even rounds
    and reversed in odd ones, so that slow periods of the host fall on all of them. Each
    block sleeps ``pause_s`` (so that a thread pool left spinning by the previous block
    does not slow this one), then runs :func:`time_calls` with at least one untimed call
    and ``warmup_s`` seconds of them, then ``calls`` timed ones. Returns
    ``{key: [rounds * calls seconds]}``.
    """
    samples = {key: [] for key in fns}
    order = list(fns)
    for r in range(rounds):
        for key in (order if r % 2 == 0 else order[::-1]):
            time.sleep(pause_s)
            samples[key] += time_calls(fns[key], calls, warmup_s=warmup_s)
    return samples
