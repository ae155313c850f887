"""lstm-numba: fast CPU LSTM-family recurrent networks with Numba-compiled kernels.

    import lstm_numba as ln
    rnn = ln.LSTM(input_size=8, hidden_size=32)
    y, (h_n, c_n) = rnn(x)           # x: (T, B, 8)
    g = rnn.backward(dy)             # g.params, g.x, g.state
"""

from lstm_numba import config
from lstm_numba.nn.layers import GRU, LSTM, Gradients
from lstm_numba.nn.models import (
    CharLM,
    Forecaster,
    SequenceClassifier,
    SequenceRegressor,
)
from lstm_numba.nn.memory import TooLargeError
from lstm_numba.registry import PluginError, plugins
from lstm_numba.training.config import TrainConfig
from lstm_numba.training.trainer import Trainer, load_trained

__version__ = config.package_version()

__all__ = [
    "CharLM", "Forecaster", "GRU", "Gradients", "LSTM", "PluginError", "SequenceClassifier",
    "SequenceRegressor", "TooLargeError", "TrainConfig", "Trainer", "__version__", "check_plugin", "load_trained", "plugins",
]


def check_plugin(name: str, kind: str | None = None):
    """Check a gate or activation plugin; see :func:`lstm_numba.plugin_check.check_plugin`."""
    from lstm_numba.plugin_check import check_plugin as _check

    return _check(name, kind)
