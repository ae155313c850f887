"""The engine: everything compiled, and everything that decides how it runs.

- :mod:`.direction`: one direction of one layer, forward (with the tape backward needs)
  and backward;
- :mod:`.tiling`: every shape-to-block decision (threads, GEMM blocks, fusion);
- :mod:`.layout`: the kernels' weight layout and the aligned, reused workspaces;
- :mod:`.blas_control`: which BLAS kernel the machine has, and holding BLAS to one thread;
- :mod:`.hooks`: the supported way to watch kernel calls (the profiler);
- :mod:`.codegen`: writes and imports one cacheable kernel module per (gate, activations, dtype);
- :mod:`.kernels`: compiled code only (the time-loop template, GEMM and array kernels).

Imports: ``lstm_numba.config`` and ``lstm_numba.contract``, never ``nn``, ``training``
or ``profiling``.
"""
