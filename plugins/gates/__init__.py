"""Built-in gates: ``lstm``, ``peephole``, ``coupled``, ``gru``, ``slstm`` and ``indrnn``."""
