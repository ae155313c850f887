"""Numba kernels: the time-loop template and the code generator that specialises it.

Importing this package raises LLVM's loop-vectoriser budget for runtime alias checks
(``-vectorize-memory-check-threshold``, default 128). A gate's backward step reads and
writes a dozen array views whose non-overlap LLVM cannot prove, and with the default budget
it leaves the loop over H scalar: measured 14.8 ns against 1.9 ns per element for the LSTM
backward step. The option is process-wide and only lets the vectoriser add more checks.
"""

import llvmlite.binding as _llvm

_llvm.set_option("", "-vectorize-memory-check-threshold=1024")
