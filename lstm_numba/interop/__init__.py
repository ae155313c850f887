"""Interop and deployment: other formats in and out of lstm-numba.

One module per format, each importing its third-party package only when called:

- :mod:`~lstm_numba.interop.safetensors_io`: ``save_safetensors`` / ``load_safetensors``
  (PyTorch names; extra ``safetensors``);
- :mod:`~lstm_numba.interop.onnx_export`: ``export_onnx`` (ONNX ``LSTM``/``GRU`` nodes plus
  heads; extra ``onnx``);
- :mod:`~lstm_numba.interop.onnx_import`: ``load_onnx`` (ONNX ``LSTM``/``GRU`` nodes as
  ``ln.LSTM``/``ln.GRU``);
- :mod:`~lstm_numba.interop.keras_import`: ``load_keras`` (Keras 3 ``.keras`` files, read with
  ``zipfile`` and ``h5py``; no TensorFlow or Keras import);
- :mod:`~lstm_numba.interop.plots`: the PNGs of ``lstm-numba plot`` (extra ``plot``).

This wing may import :mod:`lstm_numba.nn` and :mod:`lstm_numba.training`; only
``lstm_numba/__init__.py`` (lazily) and the command line import it. Every failure the
user can cause is an :class:`InteropError` (a ``ValueError``) or a
:class:`MissingExtraError` (an ``ImportError``) with a one-line message.
"""

from lstm_numba.interop.common import InteropError, MissingExtraError

__all__ = ["InteropError", "MissingExtraError"]
