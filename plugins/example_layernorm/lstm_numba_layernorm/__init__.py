"""A layer-normalised LSTM gate for lstm-numba, registered through the ``lstm_numba.gates``
entry point as ``layernorm_lstm``. See :mod:`lstm_numba_layernorm.gate`."""

__version__ = "0.1.0"
