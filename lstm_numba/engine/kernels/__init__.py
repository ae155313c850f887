"""Compiled code only: the time-loop template (specialised by :mod:`lstm_numba.engine.codegen`),
the GEMM and array kernels, and the BLAS and view intrinsics they call.

Importing this package raises LLVM's loop-vectoriser budget for runtime alias checks
(``-vectorize-memory-check-threshold``, default 128). A gate's backward step reads and
writes a dozen array views whose non-overlap LLVM cannot prove, and with the default budget
it leaves the loop over H scalar: measured 14.8 ns against 1.9 ns per element for the LSTM
backward step. The option is process-wide and only lets the vectoriser add more checks.
"""

import llvmlite.binding as _llvm

from lstm_numba import config as _config

_llvm.set_option("", "-vectorize-memory-check-threshold=1024")

# The disk-cached kernels are defined here, so their cache files go to the kernel cache
# directory, never into site-packages (see ``config.numba_cache_in_kernel_dir``).
with _config.numba_cache_in_kernel_dir():
    from lstm_numba.engine.kernels import arrays, gemm  # noqa: F401, E402
