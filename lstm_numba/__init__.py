"""lstm-numba: fast CPU LSTM-family recurrent networks with Numba-compiled kernels.

    import lstm_numba as ln
    rnn = ln.LSTM(input_size=8, hidden_size=32)
    y, (h_n, c_n) = rnn(x)           # x: (T, B, 8)
    g = rnn.backward(dy)             # g.params, g.x, g.state

Interop (:mod:`lstm_numba.interop`, imported on first use, each format's package only
when called): ``rnn.save_safetensors(path)``, ``ln.load_safetensors(path)``,
``ln.export_onnx(model, path)``, ``ln.load_onnx(path)``, ``ln.load_keras(path)``.
"""

import importlib

from lstm_numba import config
from lstm_numba.nn.layers import GRU, LSTM, Gradients
from lstm_numba.nn.models import (
    CharLM,
    Forecaster,
    SequenceClassifier,
    SequenceRegressor,
)
from lstm_numba.nn.parameters import ParameterOwner
from lstm_numba.registry import PluginError, plugins
from lstm_numba.training.config import TrainConfig
from lstm_numba.training.trainer import Trainer, load_trained

__version__ = config.package_version()

#: Public interop functions: name -> module of lstm_numba.interop, imported on first access.
_INTEROP = {
    "save_safetensors": "safetensors_io",
    "load_safetensors": "safetensors_io",
    "export_onnx": "onnx_export",
    "load_onnx": "onnx_import",
    "load_keras": "keras_import",
}

__all__ = [
    "CharLM", "Forecaster", "GRU", "Gradients", "LSTM", "PluginError", "SequenceClassifier",
    "SequenceRegressor", "TrainConfig", "Trainer", "__version__", "check_plugin", "load_trained", "plugins",
    *sorted(_INTEROP),
]


def __getattr__(name):
    module = _INTEROP.get(name)
    if module is None:
        raise AttributeError(f"module 'lstm_numba' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lstm_numba.interop.{module}"), name)


def check_plugin(name: str, kind: str | None = None):
    """Check a gate or activation plugin; see :func:`lstm_numba.plugin_check.check_plugin`."""
    from lstm_numba.plugin_check import check_plugin as _check

    return _check(name, kind)


# Every layer and model saves and loads safetensors files. The methods live here, not in
# lstm_numba.nn, so that nn never imports the interop wing (imports run one way).
def _save_safetensors(self, path) -> None:
    """Write the parameters to a safetensors file, PyTorch names (extra ``safetensors``)."""
    from lstm_numba.interop.safetensors_io import save_safetensors

    save_safetensors(self, path)


def _load_safetensors(self, path) -> None:
    """Load parameters from a safetensors file in place; keys and shapes must match."""
    from lstm_numba.interop.safetensors_io import load_into

    load_into(self, path)


ParameterOwner.save_safetensors = _save_safetensors
ParameterOwner.load_safetensors = _load_safetensors
