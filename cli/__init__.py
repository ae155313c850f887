"""The ``lstm-numba`` command line (installed as the ``lstm_numba_cli`` package)."""
