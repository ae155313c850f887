"""Machine facts a benchmark must report: the BLAS libraries and the kernel each runs,
thread counts, the environment variables that change them, and the sgemm peak.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from lstm_numba.profiling.timing import time_calls

#: Environment variables that change which OpenBLAS kernels run (docs/performance.md).
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
            "LSTM_NUMBA_ADAPTIVE_THREADS", "LSTM_NUMBA_STEP_KERNEL")


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


def blas_peak_gflops(dtype, threads: int, n: int = 1024, repeat: int = 7, statistic=min) -> float:
    """GFLOP/s of ``(n, n) @ (n, n)`` NumPy matmuls on ``threads``: of the best of ``repeat``
    calls (``statistic=statistics.median``: of their median)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    with threadpool_limits(limits=threads, user_api="blas"):
        seconds = statistic(time_calls(lambda: np.matmul(a, b, out=out), repeat, warmup=2))
    return 2.0 * n ** 3 / seconds / 1e9


#: The vector extensions that decide which kernels LLVM and BLAS pick, as /proc/cpuinfo names them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "asimd", "sve")


def cpu_model() -> dict:
    """The CPU's model name and which of :data:`ISA_FLAGS` it has (from /proc/cpuinfo; the
    platform's processor string and no flags where that is not readable), plus the
    instruction set LLVM compiles the kernels for."""
    import platform

    from numba.core import config as numba_config

    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model in ("", platform.processor(), platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
    import llvmlite.binding as llvm

    return {"model": model, "isa": [flag for flag in ISA_FLAGS if flag in flags],
            "llvm_cpu": numba_config.CPU_NAME or llvm.get_host_cpu_name()}


def cpu_description() -> str:
    """The CPU's model name and widest x86 vector ISA, e.g. ``Intel(R) Xeon(R) ... (AVX-512)``."""
    cpu = cpu_model()
    isa = "AVX-512" if "avx512f" in cpu["isa"] else "AVX2" if "avx2" in cpu["isa"] else "no AVX2"
    return f"{cpu['model']} ({isa})"
