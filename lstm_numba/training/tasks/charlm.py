"""The character language model task: truncated BPTT over parallel streams, bits per character.
"""

from __future__ import annotations

import os

import numpy as np

from lstm_numba.nn.losses import softmax_cross_entropy
from lstm_numba.training import data as D
from lstm_numba.training.config import TrainingError
from lstm_numba.training.tasks.common import check_loss, file_digest, rnn_kwargs


def read_text(path) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise TrainingError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text:
        raise TrainingError(f"{path}: empty text file")
    return text


class CharLMTask:
    """Character language modelling by stateful truncated BPTT.

    The first ``1 - val_fraction`` of the text is split into ``batch_size`` contiguous
    streams (:func:`~lstm_numba.training.data.batchify_stream`) walked in chunks of ``window``
    characters (:func:`~lstm_numba.training.data.iterate_bptt`); the final state of each chunk is
    the initial state of the next (as plain arrays: no gradient flows back across chunks)
    and it is reset to zeros at each epoch start. Chunk order is fixed (no shuffling).
    """

    name = "charlm"
    loss_name = "cross_entropy"

    def __init__(self, cfg):
        from lstm_numba import datasets

        self.cfg = cfg
        self.path = cfg.data or datasets.text_path(datasets.DEFAULT_TEXT)
        self.embedded = cfg.data is None
        corpus = read_text(self.path)  # not `text`: the name of a data module
        self.vocab = D.CharVocab.from_text(corpus)
        ids = self.vocab.encode(corpus)
        if len(ids) < 4:
            raise TrainingError(f"{self.path}: text too short ({len(ids)} characters)")
        train, val = D.time_split(len(ids), cfg.val_fraction)
        try:
            self.stream = D.batchify_stream(ids[train], cfg.batch_size)
        except ValueError as exc:
            raise TrainingError(f"{self.path}: training text ({train.stop} characters) too "
                                f"short for --batch-size {cfg.batch_size}: {exc}") from None
        val_ids = ids[val]
        val_batch = max(1, min(cfg.batch_size, len(val_ids) // max(2, cfg.window + 1)))
        self.val_stream = D.batchify_stream(val_ids, val_batch) if len(val_ids) >= 2 * val_batch else None
        if self.val_stream is None:
            raise TrainingError(f"{self.path}: validation text too short ({len(val_ids)} characters)")
        self.chunks = list(D.iterate_bptt(self.stream, cfg.window))
        self.state = None

    def model_config(self) -> dict:
        kw = rnn_kwargs(self.cfg)
        kw.pop("bidirectional")
        return dict(type="charlm", vocab_size=self.vocab.size,
                    embedding_dim=self.cfg.embedding_dim or None, **kw)

    @property
    def n_train(self) -> int:
        return len(self.chunks) * self.stream.shape[1]

    def data_state(self) -> dict:
        return {"path": None if self.embedded else os.path.abspath(self.path),
                "embedded": "alice" if self.embedded else None,
                "sha256": file_digest(self.path), "vocab": self.vocab.to_dict()}

    def start_epoch(self):
        self.state = None

    def batches(self, rng, batch_size):
        return range(len(self.chunks))

    def train_step(self, model, index):
        loss, grads, b, self.state = self.train_streams(model, index, None, self.state)
        return loss, grads, b

    def train_streams(self, model, index, streams, state):
        """One truncated-BPTT step on chunk ``index`` for the parallel ``streams`` (an index
        array; None: all of them) from their carried ``state``; returns ``(loss, grads,
        n_streams, new_state)``. A data-parallel shard is a subset of the streams
        (:mod:`lstm_numba.training.distributed`)."""
        inputs, targets = self.chunks[index]
        if streams is not None:
            inputs, targets = inputs[:, streams], targets[:, streams]
        logits, state = model.forward(inputs.T, state)
        b, t, v = logits.shape
        loss, dlogits = softmax_cross_entropy(logits.reshape(b * t, v), targets.T.reshape(-1))
        return check_loss(loss), model.backward(dlogits.reshape(b, t, v)), b, state

    def evaluate(self, model) -> dict:
        state, total, count = None, 0.0, 0
        for inputs, targets in D.iterate_bptt(self.val_stream, self.cfg.window):
            logits, state = model.forward(inputs.T, state, need_grad=False)
            b, t, v = logits.shape
            loss, _ = softmax_cross_entropy(logits.reshape(b * t, v).astype(np.float64),
                                            targets.T.reshape(-1))
            total += loss * b * t
            count += b * t
        loss = total / count
        return {"val_loss": loss, "val_bpc": loss / np.log(2.0)}

    def describe_validation(self) -> str:
        return f"last {self.cfg.val_fraction:.0%} of the text, {self.val_stream.size} characters"
