"""lstm-numba: fast CPU LSTM-family recurrent networks with Numba-compiled kernels.

    import lstm_numba as ln
    rnn = ln.LSTM(input_size=8, hidden_size=32)
    y, (h_n, c_n) = rnn(x)           # x: (T, B, 8)
    g = rnn.backward(dy)             # g.params, g.x, g.state
"""

from lstm_numba.layers import GRU, LSTM, Gradients
from lstm_numba.registry import PluginError, plugins

__version__ = "0.1.0"

__all__ = ["GRU", "LSTM", "Gradients", "PluginError", "check_plugin", "plugins", "__version__"]


def check_plugin(name: str, kind: str | None = None):
    """Check a gate or activation plugin; see :func:`lstm_numba.checking.check_plugin`."""
    from lstm_numba.checking import check_plugin as _check

    return _check(name, kind)
