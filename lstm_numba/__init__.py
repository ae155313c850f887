"""lstm-numba: fast CPU LSTM-family recurrent networks with Numba-compiled kernels.

    import lstm_numba as ln
    rnn = ln.LSTM(input_size=8, hidden_size=32)
    y, (h_n, c_n) = rnn(x)           # x: (T, B, 8)
    g = rnn.backward(dy)             # g.params, g.x, g.state

Interop (:mod:`lstm_numba.interop`, each format's package imported only when called):
``rnn.save_safetensors(path)``, ``ln.load_safetensors(path)``, ``ln.export_onnx(model, path)``,
``ln.load_onnx(path)``, ``ln.load_keras(path)``.

The public names load on first use, so importing the package (or one of its light
modules, such as :mod:`lstm_numba.training.config`, which the CLI reads at ``--help``
time) compiles nothing and does not import numba.
"""

from __future__ import annotations

import importlib

from lstm_numba import config

__version__ = config.package_version()

#: Public name -> the module that defines it.
_PUBLIC = {
    "LSTM": "lstm_numba.nn.layers",
    "GRU": "lstm_numba.nn.layers",
    "Gradients": "lstm_numba.nn.layers",
    "StreamState": "lstm_numba.nn.layers",
    "CharLM": "lstm_numba.nn.models",
    "Forecaster": "lstm_numba.nn.models",
    "SequenceClassifier": "lstm_numba.nn.models",
    "SequenceRegressor": "lstm_numba.nn.models",
    "PluginError": "lstm_numba.registry",
    "plugins": "lstm_numba.registry",
    "TrainConfig": "lstm_numba.training.config",
    "Trainer": "lstm_numba.training.trainer",
    "load_trained": "lstm_numba.training.trainer",
    "check_plugin": "lstm_numba.plugin_check",
    "TooLargeError": "lstm_numba.nn.memory",
    "save_safetensors": "lstm_numba.interop.safetensors_io",
    "load_safetensors": "lstm_numba.interop.safetensors_io",
    "export_onnx": "lstm_numba.interop.onnx_export",
    "load_onnx": "lstm_numba.interop.onnx_import",
    "load_keras": "lstm_numba.interop.keras_import",
}

__all__ = sorted([*_PUBLIC, "__version__"])


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'lstm_numba' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
