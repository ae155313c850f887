"""Competing load for the benchmarks: busy processes that each keep one core spinning."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

#: Seconds to wait after starting the load, so that the kernel's counters (and the engine's
#: thread policy, ``engine.threads``) see it.
SETTLE_S = 1.0


@contextlib.contextmanager
def busy_processes(n: int):
    """While inside, ``n`` Python processes spin on a core each; yields their list."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        if procs:
            time.sleep(SETTLE_S)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
