"""An Elman RNN gate for lstm-numba, registered through the ``lstm_numba.gates`` entry point as
``elman_rnn``. See :mod:`lstm_numba_elman.gate`."""

__version__ = "0.1.0"
