"""What every task shares: file digests, mini-batch rows and the recurrent layer's arguments.
"""

from __future__ import annotations

import hashlib
import math

from lstm_numba.nn.models import derive_seed
from lstm_numba.training import data as D
from lstm_numba.training.config import TrainingError


class NonFiniteLoss(TrainingError):
    """A training step's loss is NaN or Inf (raised before its backward, which would refuse
    the non-finite gradient); :meth:`lstm_numba.training.trainer.Trainer.fit` turns it into
    a report of the divergence."""

    def __init__(self, loss: float):
        super().__init__(f"the loss is {loss}")
        self.loss = loss


def check_loss(loss: float) -> float:
    """``loss`` if finite; else :class:`NonFiniteLoss` (call it between the loss and backward)."""
    if not math.isfinite(loss):
        raise NonFiniteLoss(loss)
    return loss


def file_digest(path) -> str:
    """SHA-256 of a file's bytes (checkpoints use it to notice changed data on resume)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def batch_rows(n: int, batch_size: int, rng, shuffle: bool = True):
    return list(D.iterate_minibatches(n, batch_size, rng, shuffle=shuffle))


def rnn_kwargs(cfg) -> dict:
    return dict(hidden_size=cfg.hidden_size, num_layers=cfg.layers, bidirectional=cfg.bidirectional,
                dropout=cfg.dropout, dtype=cfg.dtype, seed=derive_seed(cfg.seed, "model"),
                gate=cfg.gate, activation=cfg.activation,
                recurrent_activation=cfg.recurrent_activation, num_heads=cfg.num_heads,
                zoneout=cfg.zoneout, zoneout_cell=cfg.zoneout_cell, recurrent_dropout=cfg.recurrent_dropout)
