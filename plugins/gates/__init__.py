"""Built-in gates: ``lstm``, ``peephole``, ``coupled`` and ``gru``."""
