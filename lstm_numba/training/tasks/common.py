"""What every task shares: the task error, file digests, inferring the task from a
file, mini-batch rows and the recurrent layer's arguments.
"""

from __future__ import annotations

import hashlib
import math
import os

from lstm_numba.nn.models import derive_seed
from lstm_numba.training.data import labelled


class TrainingError(ValueError):
    """Training cannot go on (bad data for the task, or a diverging run)."""


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


def _is_labelled_csv(path) -> bool:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), None) or []
    names = {h.strip() for h in header}
    return {"sequence_id", "label"} <= names


def infer_task(path) -> str:
    """The task a data file implies: ``.txt`` -> charlm, ``.npz`` -> classify, a CSV with
    ``sequence_id`` and ``label`` columns -> classify, other ``.csv`` -> forecast; no
    file -> forecast (the embedded CO2 series)."""
    if path is None:
        return "forecast"
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".txt":
        return "charlm"
    if suffix == ".npz":
        return "classify"
    if suffix == ".csv":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        return "classify" if _is_labelled_csv(path) else "forecast"
    raise ValueError(f"{path}: cannot tell the task from the suffix {suffix!r}; use a .csv "
                     "(forecast or labelled), .npz (classify) or .txt (charlm) file, or --task")


def _batch_rows(n: int, batch_size: int, rng, shuffle: bool = True):
    return list(labelled.iterate_minibatches(n, batch_size, rng, shuffle=shuffle))


def _rnn_kwargs(cfg) -> dict:
    return dict(hidden_size=cfg.hidden_size, num_layers=cfg.layers, bidirectional=cfg.bidirectional,
                dropout=cfg.dropout, dtype=cfg.dtype, seed=derive_seed(cfg.seed, "model"),
                gate=cfg.gate, activation=cfg.activation,
                recurrent_activation=cfg.recurrent_activation)
