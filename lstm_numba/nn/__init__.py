"""The public layers and models: :class:`~.layers.LSTM` and :class:`~.layers.GRU`, the
heads, the task models, parameters, input validation and losses.

Imports: the engine, the registry and ``config``; never ``training`` or ``profiling``.
"""
