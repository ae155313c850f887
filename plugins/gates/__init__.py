"""Built-in gates: ``lstm``, ``peephole``, ``coupled``, ``gru`` and ``slstm``."""
