"""Helpers of the interop tests: tiny trained checkpoints of each task, onnxruntime runs and
one-line error checks."""

from __future__ import annotations

import numpy as np
from train_helpers import write_labelled, write_series, write_text

#: Tiny but real runs of each task (a few optimizer steps), so the checkpoints have history.
RUNS = {
    "forecast": lambda d: dict(data=write_series(d / "s.csv", n=120), window=12, horizon=3, hidden_size=6,
                               batch_size=32, epochs=2, season=12),
    "forecast_seq2seq": lambda d: dict(data=write_series(d / "s2.csv", n=120, seed=1), window=8, horizon=2,
                                       hidden_size=5, batch_size=32, epochs=1, seq2seq=True, gate="gru"),
    "classify": lambda d: dict(data=write_labelled(d / "l.npz", n=40), hidden_size=6, batch_size=20, epochs=2,
                               layers=2, bidirectional=True),
    "charlm": lambda d: dict(data=write_text(d / "t.txt", 800), window=32, hidden_size=8, batch_size=4,
                             epochs=2, embedding_dim=5),
}


def train_checkpoints(directory, names=tuple(RUNS)) -> dict:
    """name -> path of a checkpoint trained in ``directory``."""
    from lstm_numba.training.config import TrainConfig
    from lstm_numba.training.trainer import Trainer

    paths = {}
    for name in names:
        path = directory / f"{name}.npz"
        Trainer(TrainConfig(**RUNS[name](directory))).fit(checkpoint=str(path))
        paths[name] = path
    return paths


def run_onnx(path, feeds: dict) -> dict:
    """Every output of the ONNX file at ``path`` by name, from onnxruntime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def one_line(exc_info, *fragments) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def series_windows(trained, n=4):
    """``n`` windows of the trained forecaster's own data in original units (n, window, F)."""
    from lstm_numba.training.data.tables import read_csv_columns

    d = trained.data
    values = read_csv_columns(trained.config.data, d["columns"]).values
    w = d["window"]
    return np.stack([values[len(values) - w - k: len(values) - k] for k in range(n)])
