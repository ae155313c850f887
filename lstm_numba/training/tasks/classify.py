"""The sequence classification task: labelled sequences, softmax cross-entropy, accuracy.
"""

from __future__ import annotations

import os

import numpy as np

from lstm_numba.nn.losses import softmax_cross_entropy
from lstm_numba.nn.models import derive_seed
from lstm_numba.training import data as D
from lstm_numba.training.config import TrainingError
from lstm_numba.training.tasks.common import (
    batch_rows,
    check_loss,
    file_digest,
    rnn_kwargs,
)


class ClassifyTask:
    """Sequence classification from labelled ``.npz`` or long-format CSV data.

    A seeded random ``val_fraction`` of the sequences is held out; features are
    normalised with the training sequences' statistics over their valid steps.
    """

    name = "classify"
    loss_name = "cross_entropy"

    def __init__(self, cfg):
        if cfg.data is None:
            raise TrainingError("--task classify needs labelled data: an .npz with x, y "
                                "(and lengths) or a CSV with sequence_id, label and feature columns")
        self.cfg = cfg
        self.path = cfg.data
        seqs = D.load_labelled(self.path)
        n = len(seqs.y)
        if n < 2:
            raise TrainingError(f"{self.path}: needs at least 2 labelled sequences, got {n}")
        self.num_classes = int(seqs.y.max()) + 1
        if self.num_classes < 2:
            raise TrainingError(f"{self.path}: all labels are {int(seqs.y.max())}; "
                                "classification needs at least 2 classes")
        order = np.random.default_rng(derive_seed(cfg.seed, "split")).permutation(n)
        n_val = min(n - 1, max(1, round(n * cfg.val_fraction)))
        val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
        mask = _valid_steps(seqs.lengths, seqs.x.shape[1])
        self.normalizer = D.Normalizer().fit(seqs.x[train][mask[train]])
        self.dtype = np.dtype(cfg.dtype)
        x = normalise_valid_steps(self.normalizer, seqs.x, seqs.lengths, self.dtype)
        self.x_train, self.y_train, self.len_train = x[train], seqs.y[train], seqs.lengths[train]
        self.x_val, self.y_val, self.len_val = x[val], seqs.y[val], seqs.lengths[val]
        self.input_size = x.shape[2]

    def model_config(self) -> dict:
        return dict(type="classifier", input_size=self.input_size, num_classes=self.num_classes,
                    **rnn_kwargs(self.cfg))

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def data_state(self) -> dict:
        return {"path": os.path.abspath(self.path), "sha256": file_digest(self.path),
                "normalizer": self.normalizer.to_dict(), "num_classes": self.num_classes,
                "input_size": self.input_size}

    def start_epoch(self):
        pass

    def batches(self, rng, batch_size):
        return batch_rows(self.n_train, batch_size, rng)

    def train_step(self, model, rows):
        logits = model.forward(self.x_train[rows], self.len_train[rows])
        loss, dlogits = softmax_cross_entropy(logits, self.y_train[rows])
        return check_loss(loss), model.backward(dlogits), len(rows)

    def evaluate(self, model) -> dict:
        logits = model.predict(self.x_val, self.len_val).astype(np.float64)
        loss, _ = softmax_cross_entropy(logits, self.y_val)
        return {"val_loss": loss, "val_accuracy": float(np.mean(logits.argmax(1) == self.y_val))}

    def describe_validation(self) -> str:
        return f"{len(self.y_val)} held-out sequences, {self.num_classes} classes"

    # ------------------------------------------------------------------ inference
    @staticmethod
    def predict_proba(model, state: dict, x, lengths, source: str = "x") -> np.ndarray:
        """Class probabilities ``(N, C)`` of raw sequences ``x`` ``(N, T, F)`` with ``lengths``,
        prepared as in training from the checkpoint's ``state`` (:meth:`data_state`)."""
        if x.shape[2] != state["input_size"]:
            raise ValueError(f"{source}: sequences have {x.shape[2]} features, the model was trained on "
                             f"{state['input_size']}")
        normalizer = D.Normalizer.from_dict(state["normalizer"])
        return model.predict_proba(normalise_valid_steps(normalizer, x, lengths, model.dtype), lengths)


def _valid_steps(lengths, steps: int) -> np.ndarray:
    """(N, T) bool: which steps of each sequence are within its length."""
    return np.arange(steps)[None, :] < np.asarray(lengths)[:, None]


def normalise_valid_steps(normalizer, x, lengths, dtype) -> np.ndarray:
    """``x`` (N, T, F) normalised on its valid steps, zero on the padding, as ``dtype``."""
    mask = _valid_steps(lengths, x.shape[1])
    return np.where(mask[:, :, None], normalizer.transform(x), 0.0).astype(dtype)
