"""The built-in gate and activation plugins of lstm-numba.

They are registered through the ``lstm_numba.gates`` and ``lstm_numba.activations`` entry
points in the project's ``pyproject.toml``, exactly as a third-party package registers
its own, and they import nothing from the engine but :mod:`lstm_numba.contract`.
"""
