"""The CTC acoustic model: feature frames -> (bidirectional) recurrent layers ->
``Dense(features, num_classes)`` logits per frame, trained with :func:`lstm_numba.nn.ctc.ctc_loss`.
"""

from __future__ import annotations

import numpy as np

from lstm_numba.nn import validation
from lstm_numba.nn.heads import Dense
from lstm_numba.nn.models import _RecurrentModel, derive_seed

__all__ = ["CTCAcousticModel"]


class CTCAcousticModel(_RecurrentModel):
    """``forward(x (B, T, F), lengths)`` returns per-frame logits ``(B, T, num_classes)``;
    class 0 is the CTC blank. Padded frames' outputs are the head's bias (the loss gives
    them a zero gradient)."""

    type_name = "ctc_acoustic"

    def __init__(self, input_size: int, num_classes: int, hidden_size: int = 128,
                 num_layers: int = 2, *, bidirectional: bool = True, dropout: float = 0.0,
                 dtype="float32", seed: int | None = None, gate: str = "lstm",
                 activation: str = "tanh", recurrent_activation: str = "sigmoid"):
        self.input_size = validation.positive_int("input_size", input_size)
        self.num_classes = validation.positive_int("num_classes", num_classes)
        super().__init__(self.input_size, hidden_size, num_layers, bidirectional=bidirectional,
                         dropout=dropout, dtype=dtype, seed=seed, gate=gate,
                         activation=activation, recurrent_activation=recurrent_activation)
        self.head = Dense(self.features, self.num_classes, self.dtype,
                          np.random.default_rng(derive_seed(self.seed, "head")))
        self.parts = {"rnn": self.rnn, "head": self.head}
        self._finish()
        self._kept = False

    def config(self) -> dict:
        return dict(type=self.type_name, input_size=self.input_size,
                    num_classes=self.num_classes, **self._rnn_config())

    def forward(self, x, lengths=None, *, need_grad=None) -> np.ndarray:
        self._check_params_live()
        keep = self._need_grad(need_grad)
        y, _ = self.rnn.forward(np.asarray(x, dtype=self.dtype), None, lengths, need_grad=keep)
        self._kept = keep
        return self.head.forward(y, need_grad=keep)

    __call__ = forward

    def backward(self, dlogits) -> dict:
        """Gradients of every parameter given ``dL/dlogits`` ``(B, T, num_classes)``."""
        if not self._kept:
            raise RuntimeError("backward() needs a forward() in training mode or with need_grad=True")
        head_grads, dy = self.head.backward(np.asarray(dlogits, dtype=self.dtype))
        g = self.rnn.backward(dy)
        return self._ordered({**self._prefixed("rnn", g.params),
                              **self._prefixed("head", head_grads)})
