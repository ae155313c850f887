"""The sequence classification task: labelled sequences, softmax cross-entropy, accuracy.
"""

from __future__ import annotations

import os

import numpy as np

from lstm_numba.nn.losses import softmax_cross_entropy
from lstm_numba.nn.models import derive_seed
from lstm_numba.training.data import labelled, series
from lstm_numba.training.tasks.common import (
    TrainingError,
    _batch_rows,
    _rnn_kwargs,
    check_loss,
    file_digest,
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
        seqs = labelled.load_labelled(self.path)
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
        mask = np.arange(seqs.x.shape[1])[None, :] < seqs.lengths[:, None]
        self.normalizer = series.Normalizer().fit(seqs.x[train][mask[train]])
        x = np.where(mask[:, :, None], self.normalizer.transform(seqs.x), 0.0)
        self.dtype = np.dtype(cfg.dtype)
        self.x_train, self.y_train, self.len_train = x[train].astype(self.dtype), seqs.y[train], seqs.lengths[train]
        self.x_val, self.y_val, self.len_val = x[val].astype(self.dtype), seqs.y[val], seqs.lengths[val]
        self.input_size = x.shape[2]

    def model_config(self) -> dict:
        return dict(type="classifier", input_size=self.input_size, num_classes=self.num_classes,
                    **_rnn_kwargs(self.cfg))

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
        return _batch_rows(self.n_train, batch_size, rng)

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
