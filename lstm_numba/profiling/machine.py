"""Machine facts a benchmark must report: the BLAS libraries and the kernel each runs,
thread counts, the environment variables that change them, and the sgemm peak.
"""

from __future__ import annotations

import contextlib
import os
import platform

import numpy as np

from lstm_numba.profiling.timing import time_calls

#: Environment variables that change which OpenBLAS kernels run (docs/performance.md).
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "LSTM_NUMBA_ADAPTIVE_THREADS")


def env_settings() -> dict:
    """The BLAS/threading environment variables, ``None`` where unset."""
    return {name: os.environ.get(name) for name in BLAS_ENV}


def _library_owner(path: str) -> str:
    lowered = path.replace("\\", "/").lower()
    for owner in ("numpy", "scipy", "torch", "numba"):
        if f"/{owner}.libs/" in lowered or f"/{owner}/" in lowered:
            return owner
    return "system"


def blas_info() -> list[dict]:
    """The thread pools threadpoolctl sees (BLAS and OpenMP), with the package owning each."""
    from threadpoolctl import threadpool_info

    rows = []
    for info in threadpool_info():
        rows.append({
            "owner": _library_owner(info.get("filepath", "")),
            "user_api": info.get("user_api"),
            "internal_api": info.get("internal_api"),
            "version": info.get("version"),
            "architecture": info.get("architecture"),
            "threading_layer": info.get("threading_layer"),
            "num_threads": info.get("num_threads"),
            "filepath": info.get("filepath"),
        })
    return rows


def engine_limiter_gaps() -> list[str]:
    """BLAS libraries loaded now that the engine's one-thread limiter does not cover.

    The engine builds its ``ThreadpoolController`` once; a BLAS loaded after that (SciPy's,
    which Numba's ``np.dot`` loads when the kernels compile) is not held to one thread.
    """
    try:
        from lstm_numba.engine import blas_control

        covered = {os.path.realpath(lib.filepath) for lib in blas_control._threadpool_controller().lib_controllers}
    except Exception:  # a diagnostic only; the engine may change
        return []
    return sorted(os.path.basename(row["filepath"]) for row in blas_info()
                  if row["user_api"] == "blas" and os.path.realpath(row["filepath"]) not in covered)


def cpu_description() -> str:
    """The CPU's model name and widest vector ISA, e.g. ``Intel(R) Xeon(R) ... (AVX-512)``."""
    fields = {}
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if "model name" in fields and "flags" in fields:
                    break
    flags = set(fields.get("flags", "").split())
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2" if flags else "ISA unknown"
    return f"{fields.get('model name') or platform.machine()} ({isa})"


def threads_info() -> dict:
    import numba

    from lstm_numba.engine import threads

    passes, why = threads.chosen_threads()
    info = {"numba": numba.get_num_threads(), "numba_threading_layer": None, "cpus": os.cpu_count(),
            "passes": passes, "passes_why": why}
    with contextlib.suppress(ValueError):  # only known after a parallel region ran
        info["numba_threading_layer"] = numba.threading_layer()
    torch = import_torch()
    if torch is not None:
        info["torch"] = torch.get_num_threads()
    return info


def import_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def blas_peak_gflops(dtype, threads: int, n: int = 1024, repeat: int = 7) -> float:
    """GFLOP/s of the best of ``repeat`` ``(n, n) @ (n, n)`` NumPy matmuls on ``threads``."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    with threadpool_limits(limits=threads, user_api="blas"):
        best = min(time_calls(lambda: np.matmul(a, b, out=out), repeat, warmup=2))
    return 2.0 * n ** 3 / best / 1e9
