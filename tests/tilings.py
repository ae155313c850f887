"""The ``hidden-split`` test tiling, shared by the ``tiling`` fixture (conftest.py) and the
subprocess scripts that must run under the same settings (test_lstm_behaviour.py)."""


def hidden_split_settings() -> list:
    """(object, attribute, value) triples that force the hidden-part tiling and GEMM blocks.

    They lower the thresholds and pretend to have 4 cores, so elementwise gates split any
    even H into 2 or 4 parts (down to one unit each) whatever this machine has, and pretend
    that the BLAS has OpenBLAS's small-matrix kernel with lower limits, so that the
    recurrent GEMMs run in blocks of 4 columns and a split depth
    (``lstm_numba.engine.tiling.gemm_blocks``) and the weight gradients in blocks of 4 gates
    by 5 rows (``lstm_numba.engine.kernels.gemm.weight_gradients_blocked``).
    """
    from lstm_numba.engine import blas_control, tiling

    return [
        (tiling, "HIDDEN_SPLIT_MIN_FLOPS", 0),
        (tiling, "HIDDEN_SPLIT_MIN_UNITS", 1),
        (tiling.numba.config, "NUMBA_DEFAULT_NUM_THREADS", 4),
        (blas_control, "small_kernel_available", lambda: True),
        (tiling, "SMALL_KERNEL_MAX_MNK", 64),
        (tiling, "SMALL_GEMM_COLUMNS", 4),
        (tiling, "weight_gradient_blocks", lambda n_gates, depth, small_kernel: (4, 5)),
    ]
