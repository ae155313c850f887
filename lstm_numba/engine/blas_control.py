"""The BLAS the kernels call: which kernel it runs, and holding its pools to one thread.

Holding BLAS to one thread inside the kernels avoids the oversubscription trap measured in
``docs/performance.md`` (a 2-thread BLAS called at every step from Numba threads: 20x
slower): Numba owns the cores.
"""

from __future__ import annotations

import contextlib
import functools

#: OpenBLAS core types with that kernel (x86-64 AVX-512).
SMALL_KERNEL_CORES = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


@functools.cache
def _threadpool_controller():
    # A controller sees only the libraries loaded when it is made: load SciPy's BLAS (the
    # one Numba's np.dot calls) first.
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@functools.cache
def small_kernel_available() -> bool:
    """Whether every OpenBLAS loaded runs a core with the small-matrix GEMM kernel.

    See :mod:`lstm_numba.engine.kernels.blas`. ``OPENBLAS_CORETYPE`` decides the core, so the
    answer is fixed for a process.
    """
    cores = {str(info.get("architecture", "")).lower() for info in _threadpool_controller().info()
             if info.get("internal_api") == "openblas"}
    return bool(cores) and cores <= SMALL_KERNEL_CORES


@functools.cache
def kernel_names() -> str:
    """The core (kernel family) of every OpenBLAS loaded, e.g. ``SkylakeX``; ``?`` if none."""
    cores = sorted({str(info.get("architecture", "")) for info in _threadpool_controller().info()
                    if info.get("internal_api") == "openblas"})
    return ", ".join(cores) or "?"


@functools.cache
def _blas_pools() -> tuple:
    return tuple(_threadpool_controller().select(user_api="blas").lib_controllers)


@contextlib.contextmanager
def blas_single_thread():
    """Hold every BLAS pool (NumPy's and SciPy's OpenBLAS) to one thread.

    Talks to the pools threadpoolctl found directly: its ``limit()`` re-reads every
    library's info on each use, which measured 10 us per call, a few percent of a small
    layer's forward.
    """
    pools = _blas_pools()
    previous = [pool.num_threads for pool in pools]
    for pool in pools:
        pool.set_num_threads(1)
    try:
        yield
    finally:
        for pool, threads in zip(pools, previous):
            pool.set_num_threads(threads)
