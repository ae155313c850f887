"""The translation task: an attentional encoder-decoder on ``source<TAB>target`` pairs.

Without a file it trains on English -> French number words below one million
(:func:`~lstm_numba.training.data.pairs.number_pairs`, fixed seed), held-out numbers never
seen in training. Each epoch reports the held-out teacher-forced loss, the exact-match rate
and chrF of greedy translations.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from lstm_numba.nn.losses import softmax_cross_entropy
from lstm_numba.nn.seq2seq import BOS, EOS
from lstm_numba.nn.text_metrics import chrf, exact_match, nearest_neighbour, pad_ids
from lstm_numba.training import data as D
from lstm_numba.training.config import TrainingError
from lstm_numba.training.data.pairs import TokenVocab, number_pairs, read_pairs
from lstm_numba.training.tasks.common import check_loss, file_digest, rnn_kwargs

#: The default corpus: training numbers >= 1000, held-out numbers, repeats of those < 1000.
NUMBERS = dict(n_train=12000, n_heldout=2000, small_repeats=4)
EVAL_BATCH = 500


def _known(vocab, text) -> bool:
    try:
        vocab.encode(text)
        return True
    except ValueError:
        return False


class TranslateTask:
    name = "translate"
    loss_name = "cross_entropy"

    def __init__(self, cfg):
        self.cfg = cfg
        self.embedded = cfg.data is None
        if self.embedded:
            train, val = number_pairs(cfg.seed, **NUMBERS)
            self.path = None
        else:
            self.path = cfg.data
            pairs = read_pairs(cfg.data)
            order = np.random.default_rng(cfg.seed).permutation(len(pairs))
            n_val = max(1, int(round(len(pairs) * cfg.val_fraction)))
            val = [pairs[i] for i in order[:n_val]]
            train = [pairs[i] for i in order[n_val:]]
            if not train:
                raise TrainingError(f"{cfg.data}: no pairs left for training after holding out {n_val}")
        self.src_vocab = TokenVocab.from_texts(s for s, _ in train)
        self.tgt_vocab = TokenVocab.from_texts(t for _, t in train)
        self.train_pairs, self.val_pairs = train, val
        self.train_src = [self.src_vocab.encode(s, "source") for s, _ in train]
        self.train_tgt = [self.tgt_vocab.encode(t, "target") for _, t in train]
        self.val_pairs = [(s, t) for s, t in val if _known(self.src_vocab, s) and _known(self.tgt_vocab, t)]
        if not self.val_pairs:
            raise TrainingError(f"{self.path or 'the corpus'}: no held-out pair uses only training words")
        self.val_src = [self.src_vocab.encode(s) for s, _ in self.val_pairs]
        self.val_tgt = [self.tgt_vocab.encode(t) for _, t in self.val_pairs]
        self.max_len = 2 * max(len(t) for t in self.train_tgt) + 2

    # ---------------------------------------------------------------- what the trainer reads
    def model_config(self) -> dict:
        kw = rnn_kwargs(self.cfg)
        return dict(type="seq2seq", src_vocab_size=self.src_vocab.size, tgt_vocab_size=self.tgt_vocab.size,
                    embedding_dim=self.cfg.embedding_dim or 64, decoder_size=None, attention="general", **kw)

    @property
    def n_train(self) -> int:
        return len(self.train_src)

    def data_state(self) -> dict:
        digest = (hashlib.sha256(json.dumps(self.train_pairs).encode()).hexdigest() if self.embedded
                  else file_digest(self.path))
        return {"path": None if self.embedded else os.path.abspath(self.path),
                "embedded": "numbers-en-fr" if self.embedded else None, "sha256": digest,
                "src_vocab": self.src_vocab.to_dict(), "tgt_vocab": self.tgt_vocab.to_dict(),
                "max_len": self.max_len, "beam": 1, "length_penalty": 1.0}

    def start_epoch(self):
        pass

    def batches(self, rng, batch_size):
        return list(D.iterate_minibatches(self.n_train, batch_size, rng, shuffle=True))

    @staticmethod
    def teacher_batch(src, tgt):
        """``(src, src_lengths, tgt_in, tgt_lengths, tgt_out)`` arrays for lists of id lists."""
        src_ids, src_lengths = pad_ids(src)
        tgt_in, lengths = pad_ids([[BOS] + t for t in tgt])
        tgt_out, _ = pad_ids([t + [EOS] for t in tgt])
        return src_ids, src_lengths, tgt_in, lengths, tgt_out

    def _loss(self, model, rows_src, rows_tgt, need_grad):
        src, src_lengths, tgt_in, tgt_lengths, tgt_out = self.teacher_batch(rows_src, rows_tgt)
        logits = model.forward(src, src_lengths, tgt_in, tgt_lengths, need_grad=need_grad)
        b, t, v = logits.shape
        labels = np.where(np.arange(t)[None, :] < tgt_lengths[:, None], tgt_out, -1).reshape(-1)
        loss, dlogits = softmax_cross_entropy(logits.reshape(b * t, v), labels, ignore_index=-1)
        return loss, dlogits.reshape(b, t, v), b

    def train_step(self, model, rows):
        loss, dlogits, b = self._loss(model, [self.train_src[i] for i in rows],
                                      [self.train_tgt[i] for i in rows], True)
        return check_loss(loss), model.backward(dlogits), b

    def translate_ids(self, model, sources, beam=1):
        out = []
        for start in range(0, len(sources), EVAL_BATCH):
            src, lengths = pad_ids(sources[start:start + EVAL_BATCH])
            out += model.translate(src, lengths, beam=beam, max_len=self.max_len)
        return out

    def evaluate(self, model) -> dict:
        total, count = 0.0, 0
        for start in range(0, len(self.val_src), EVAL_BATCH):
            part = slice(start, start + EVAL_BATCH)
            loss, _, b = self._loss(model, self.val_src[part], self.val_tgt[part], False)
            total += loss * b
            count += b
        hyps = [self.tgt_vocab.decode(ids) for ids in self.translate_ids(model, self.val_src)]
        refs = [t for _, t in self.val_pairs]
        return {"val_loss": total / count, "val_exact": exact_match(hyps, refs), "val_chrf": chrf(hyps, refs)}

    def baseline(self) -> dict:
        """The training target of the nearest training source by edit distance (over words)."""
        nearest = nearest_neighbour(self.val_src, self.train_src)
        hyps = [self.train_pairs[i][1] for i in nearest]
        refs = [t for _, t in self.val_pairs]
        return {"exact": exact_match(hyps, refs), "chrf": chrf(hyps, refs)}

    def describe_validation(self) -> str:
        what = "numbers never seen in training" if self.embedded else "random pairs"
        return f"{len(self.val_pairs)} held-out {what}"
