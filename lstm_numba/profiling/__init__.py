"""Where the time goes: per-phase timing of one layer stack, for ``lstm-numba profile``
and ``benchmarks/bench_lstm.py``.

Phases of one training iteration (all times are medians over ``repeat`` iterations):

- ``compile_cold`` / ``compile_cached``: first forward + backward call in a fresh process,
  once with an empty kernel cache directory and once more with the cache it filled
  (subprocesses, so the measuring process's own state does not leak in);
- ``input_gemm``: the ``input_projection`` kernel, ``x @ W_ih^T + b_ih`` over all steps
  (zero for a layer whose projection the engine fuses into the time loop,
  :func:`lstm_numba.engine.tiling.fuses_input_projection`);
- ``forward_kernel``: ``forward_rows`` or ``forward_parts``, the compiled time loop
  (recurrent GEMMs, fused input projections, gates);
- ``forward_other``: the rest of ``forward`` (allocation, copies, NumPy, Python);
- ``backward_kernel``: ``backward_rows`` or ``backward_parts``, the compiled reverse time
  loop;
- ``backward_gemms``: ``weight_gradients`` (or ``weight_gradients_blocked``) and
  ``input_gradient`` (dW_ih, dW_hh, db, dx);
- ``backward_other``: the rest of ``backward`` (zero-fills, copies, NumPy, Python);
- ``optimizer``: one :class:`lstm_numba.training.optim.Adam` step on the layer's parameters.

Nothing is timed inside the engine: the profiler observes the engine's kernel calls
through its hook (:func:`lstm_numba.engine.hooks.observe`), maps each kernel to a phase
(:data:`KERNEL_PHASES`), and runs the public ``forward``/``backward``. A pass's time outside those calls is its
``*_other`` phase, so the phases add up to the iteration. If the engine computes a phase
in NumPy instead of a kernel, that work shows up under ``*_other``.

GFLOP/s count the GEMM work only: forward ``2·T·B·G·(I+H)`` per direction with
``G = n_blocks·H``, backward twice that. The percentage of peak compares with a large
``matmul`` of the same dtype and thread count measured in the same run.
"""
