"""Compile time: the first forward and backward call in fresh processes, with an empty
kernel cache and again with the cache it filled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

_COMPILE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import lstm_numba as ln
t1 = time.perf_counter()
cfg = json.loads(sys.argv[1])
model = ln.LSTM(**cfg)
x = np.zeros((3, 2, cfg["input_size"]), dtype=cfg.get("dtype", "float32"))
t2 = time.perf_counter()
y, _ = model(x)
t3 = time.perf_counter()
model.backward(np.ones_like(y))
t4 = time.perf_counter()
print("LSTM_NUMBA_COMPILE " + json.dumps({"import_s": t1 - t0, "build_s": t2 - t1,
                                          "forward_s": t3 - t2, "backward_s": t4 - t3}))
"""


def _run_compile_script(config: dict, cache_dir: str, timeout: float) -> dict:
    env = dict(os.environ)
    env["LSTM_NUMBA_CACHE_DIR"] = cache_dir
    env.pop("NUMBA_CACHE_DIR", None)  # numba then caches next to the generated modules
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(config)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith("LSTM_NUMBA_COMPILE "):
            result = json.loads(line.split(" ", 1)[1])
            result["first_call_s"] = result["forward_s"] + result["backward_s"]
            result["process_s"] = wall
            return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"compile measurement failed (exit {proc.returncode}): {tail}")


def measure_compile(config: dict, timeout: float = 600.0) -> dict:
    """First forward+backward call in a fresh process: cold (empty kernel cache) and cached.

    ``config`` is an ``LSTM.config()`` dict. Returns ``{"cold": {...}, "cached": {...}}``,
    each with ``import_s``, ``build_s``, ``forward_s``, ``backward_s``, ``first_call_s``
    (forward + backward) and ``process_s`` (the subprocess's whole wall time).
    """
    config = dict(config, batch_first=False, dropout=0.0)
    cache_dir = tempfile.mkdtemp(prefix="lstm_numba_profile_cache_")
    try:
        cold = _run_compile_script(config, cache_dir, timeout)
        cached = _run_compile_script(config, cache_dir, timeout)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return {"cold": cold, "cached": cached}
