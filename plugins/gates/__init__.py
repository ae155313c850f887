"""Built-in gates: ``lstm``, ``peephole``, ``coupled``, ``gru``, ``slstm``, ``indrnn``,
``layernorm_lstm`` and ``layernorm_gru`` (``layer_norm`` holds the last two's shared helpers)."""
