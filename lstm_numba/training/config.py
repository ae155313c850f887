"""Every setting of a training run (:class:`TrainConfig`), the task defaults and the
schedule choices.

Cheap to import: no numba, no kernels. The CLI reads its choices and defaults from here.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import numbers
import os
from dataclasses import dataclass

import numpy as np

from lstm_numba.training import optim

CHECKPOINT_KIND = "lstm-numba-train"


class TrainingError(ValueError):
    """Training cannot go on (bad data for the task, or a diverging run)."""


def _is_labelled_csv(path) -> bool:
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
    if suffix == ".tsv":
        return "translate"
    if suffix == ".csv":
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        return "classify" if _is_labelled_csv(path) else "forecast"
    raise ValueError(f"{path}: cannot tell the task from the suffix {suffix!r}; use a .csv "
                     "(forecast or labelled), .npz (classify) or .txt (charlm) file, or --task")


def default_checkpoint(task: str, data) -> str:
    """Where a run writes its checkpoint unless told: ``runs/<data file stem>.npz``, or the
    embedded data's name (``runs/co2.npz``, ``runs/alice.npz``) when no file is given."""
    if data is None:
        from lstm_numba import datasets

        stem = {"charlm": datasets.DEFAULT_TEXT, "translate": "numbers"}.get(task, datasets.DEFAULT_SERIES)
    else:
        stem = os.path.splitext(os.path.basename(os.fspath(data)))[0]
    return os.path.join("runs", f"{stem}.npz")


#: Defaults that depend on the task; ``TrainConfig`` fields left at None take these.
#: The forecast defaults are tuned so that the embedded CO2 run clearly beats the naive
#: forecasts in a few seconds of training.
TASK_DEFAULTS = {
    "forecast": dict(window=24, horizon=12, hidden_size=32, epochs=40, batch_size=32,
                     lr=1e-2, optimizer="adam", clip_grad=1.0, patience=10,
                     val_fraction=0.2, relative=True, schedule="cosine"),
    "classify": dict(window=None, horizon=None, hidden_size=32, epochs=30, batch_size=32,
                     lr=5e-3, optimizer="adam", clip_grad=1.0, patience=10,
                     val_fraction=0.2, relative=False, schedule="none"),
    "charlm": dict(window=64, horizon=None, hidden_size=128, epochs=10, batch_size=32,
                   lr=1e-2, optimizer="adam", clip_grad=1.0, patience=None,
                   val_fraction=0.1, relative=False, schedule="none"),
    "translate": dict(window=None, horizon=None, hidden_size=256, epochs=4, batch_size=64,
                      lr=3e-3, optimizer="adam", clip_grad=1.0, patience=None,
                      val_fraction=0.1, relative=False, schedule="cosine"),
}


SCHEDULES = ("none", "cosine", "step")
DTYPES = ("float32", "float64")


RESUMABLE = ("epochs", "patience")  # settings a resumed run may change


@dataclass
class TrainConfig:
    """Every setting of a training run; None means "the task's default" (``TASK_DEFAULTS``).

    data        CSV (forecast, or labelled classify), ``.npz`` (classify) or ``.txt``
                (charlm); None: the embedded CO2 series (forecast) or Alice text (charlm)
    task        forecast | classify | charlm; None: inferred from ``data``
    target, columns   forecast: the column to predict and the input columns (default:
                every numeric column; the target must be given when there are several)
    window      forecast: input steps per window; charlm: truncated-BPTT chunk length
    horizon     forecast: steps ahead predicted at once
    season      forecast: period of the seasonal-naive baseline (default 12 for the
                embedded CO2 series, none otherwise)
    relative    forecast: windows relative to their last value (see ``ForecastTask``)
    seq2seq     forecast: train the head at every step (sequence-to-sequence)
    patience    epochs without validation improvement before stopping; 0/None: never
    shards      data parallelism: cut every global batch into this many shards (fixed by
                shard index), sum their gradients in shard order and step once
                (:mod:`lstm_numba.training.distributed`); the result depends on the seed
                and ``shards`` only, not on how many workers compute them. None: unsharded
                (one process), or the number of workers when a Dask client is given
    """

    task: str | None = None
    data: str | None = None
    target: str | None = None
    columns: list | None = None
    window: int | None = None
    horizon: int | None = None
    season: int | None = None
    relative: bool | None = None
    seq2seq: bool = False
    val_fraction: float | None = None
    hidden_size: int | None = None
    layers: int = 1
    bidirectional: bool = False
    gate: str = "lstm"
    activation: str = "tanh"
    recurrent_activation: str = "sigmoid"
    num_heads: int = 1
    dropout: float = 0.0
    zoneout: float = 0.0
    zoneout_cell: float = 0.0
    recurrent_dropout: float = 0.0
    embedding_dim: int | None = 32
    dtype: str = "float32"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    clip_grad: float | None = None
    schedule: str | None = None
    seed: int = 0
    patience: int | None = None
    restore_best: bool = True
    shards: int | None = None

    def resolved(self) -> "TrainConfig":
        """A copy with the task inferred, task defaults filled in and values checked."""
        task = self.task or infer_task(self.data)
        if task not in TASK_DEFAULTS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_DEFAULTS)}")
        changes = {"task": task}
        for key, value in TASK_DEFAULTS[task].items():
            if getattr(self, key) is None:
                changes[key] = value
        if task == "forecast" and self.season is None and self.data is None:
            from lstm_numba import datasets

            changes["season"] = datasets.SEASONAL_PERIOD
        cfg = dataclasses.replace(self, **changes)
        cfg._check()
        return cfg

    def _check(self) -> None:
        def positive(name, allow_none=False):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")

        for name in ("hidden_size", "layers", "epochs", "batch_size"):
            positive(name)
        if self.task in ("forecast", "charlm"):
            positive("window")
        if self.task == "forecast":
            positive("horizon")
            positive("season", allow_none=True)
        if self.task != "forecast":
            given = [name for name in ("target", "columns", "horizon", "season") if getattr(self, name)]
            given += ["seq2seq"] if self.seq2seq else []
            given += ["window"] if self.task in ("classify", "translate") and self.window else []
            if given:
                raise ValueError(f"{', '.join(n.replace('_', '-') for n in given)}: only for --task "
                                 f"forecast, not {self.task}")
        if self.task == "charlm":
            if self.embedding_dim:  # None or 0: one-hot input
                positive("embedding_dim")
            if self.bidirectional:
                raise ValueError("a character language model cannot be bidirectional")
        if self.shards is not None:
            positive("shards")
            if self.shards > self.batch_size:
                raise ValueError(f"shards ({self.shards}) cannot exceed batch-size ({self.batch_size}): "
                                 "every shard needs at least one sequence of each global batch")
        if self.patience is not None and (not isinstance(self.patience, (int, np.integer)) or self.patience < 0):
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")
        def number(name, low, low_open, high=None, allow_none=False):
            """A finite real (not a bool or a string) above ``low`` (and below ``high``)."""
            value = getattr(self, name)
            if value is None and allow_none:
                return
            expected = (f"a finite number {'>' if low_open else '>='} {low:g}"
                        + (f" and < {high:g}" if high is not None else "") + (" (or omitted)" if allow_none else ""))
            ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
            ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
            if not ok:
                raise ValueError(f"{name.replace('_', '-')} must be {expected}, got {value!r}")

        number("val_fraction", 0, True, high=1)
        number("lr", 0, True)
        number("momentum", 0, False)
        number("weight_decay", 0, False, allow_none=True)
        number("clip_grad", 0, True, allow_none=True)
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of "
                             f"{', '.join(sorted(optim.OPTIMIZERS))}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("dropout", "zoneout", "zoneout_cell", "recurrent_dropout"):
            number(name, 0, False, high=1)
        if isinstance(self.num_heads, bool) or not isinstance(self.num_heads, (int, np.integer)) or self.num_heads < 1:
            raise ValueError(f"num-heads must be an integer >= 1, got {self.num_heads!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        # Plugins by name, so an unknown gate fails before any data is read.
        from lstm_numba import registry

        registry.get_gate(self.gate)
        registry.get_activation(self.activation)
        registry.get_activation(self.recurrent_activation)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
