"""Helpers for the model, training and CLI tests: PyTorch twins of the lstm-numba models
(same weights), small data files, the console script, and a checkpoint needing a plugin."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from lstm_numba.training import checkpoint as ck

try:
    import torch
except ImportError:  # the torch comparisons skip themselves
    torch = None


class TorchModel(torch.nn.Module if torch is not None else object):
    """``embedding`` (optional) -> ``rnn`` (nn.LSTM / nn.GRU, batch_first) -> ``head``."""

    def __init__(self, model):
        super().__init__()
        rc = model.rnn.config()
        cls = torch.nn.GRU if rc["gate"] == "gru" else torch.nn.LSTM
        dtype = torch.float64 if rc["dtype"] == "float64" else torch.float32
        if getattr(model, "embedding", None) is not None:
            e = model.embedding
            self.embedding = torch.nn.Embedding(e.num_embeddings, e.embedding_dim, dtype=dtype)
        else:
            self.embedding = None
        self.vocab = getattr(model, "vocab_size", None)
        self.rnn = cls(rc["input_size"], rc["hidden_size"], rc["num_layers"], batch_first=True,
                       bidirectional=rc["bidirectional"], dropout=0.0, dtype=dtype)
        self.head = torch.nn.Linear(model.head.in_features, model.head.out_features, dtype=dtype)
        self.kind = model.config()["type"]
        self.return_sequences = getattr(model, "return_sequences", False)
        self.hidden = rc["hidden_size"]
        self.bidirectional = rc["bidirectional"]
        self.load_numpy(model.params)

    def load_numpy(self, params: dict) -> None:
        with torch.no_grad():
            named = dict(self.named_parameters())
            assert set(named) == set(params), (sorted(named), sorted(params))
            for key, value in params.items():
                named[key].copy_(torch.from_numpy(np.array(value)))

    def grads(self) -> dict:
        return {k: p.grad.detach().numpy().copy() for k, p in self.named_parameters()}

    def forward(self, x, lengths=None, state=None):
        if self.kind == "charlm":
            inp = self.embedding(x) if self.embedding is not None else \
                torch.nn.functional.one_hot(x, self.vocab).to(self.head.weight.dtype)
            y, state = self.rnn(inp, state)
            return self.head(y), state
        if lengths is None:
            lengths = np.full(x.shape[0], x.shape[1])
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.as_tensor(np.asarray(lengths)), batch_first=True, enforce_sorted=False)
        y, h_n = self.rnn(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        if self.return_sequences:
            return self.head(y)
        h = h_n[0] if isinstance(h_n, tuple) else h_n
        feat = torch.cat([h[-2], h[-1]], dim=1) if self.bidirectional else h[-1]
        return self.head(feat)


def write_series(path, n=150, seed=0, columns=("temp",)):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    lines = ["date," + ",".join(columns)]
    for i in t:
        vals = [10 + 0.05 * i + 3 * math.sin(2 * math.pi * i / 12) + rng.normal(0, 0.3) + k
                for k in range(len(columns))]
        lines.append(f"{2000 + i // 12}-{i % 12 + 1:02d}," + ",".join(f"{v:.4f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def write_text(path, n=3000):
    from lstm_numba import datasets

    path.write_text(datasets.load_text("alice")[:n], encoding="utf-8")
    return str(path)


def write_labelled(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    lengths = rng.integers(3, 9, n)
    x = rng.normal(0, 1, (n, 8, 2)) + np.where(y == 1, 1.0, -1.0)[:, None, None]
    x[np.arange(8)[None, :] >= lengths[:, None]] = 0
    np.savez(path, x=x, y=y, lengths=lengths)
    return str(path)


def with_plugin(src, dst, name):
    c = ck.load_checkpoint(src)
    meta = dict(c.meta)
    meta["plugins"] = dict(meta["plugins"], gate={"name": name, "distribution": "lstm-fancy-gates",
                                                  "version": "2.1"})
    ck.save_checkpoint(dst, c.params, meta, c.optim_state, c.extra)


def console_script() -> str:
    found = Path(sys.executable).with_name("lstm-numba")
    if found.exists():
        return str(found)
    which = shutil.which("lstm-numba")
    if which is None:
        pytest.skip("the lstm-numba console script is not installed")
    return which
