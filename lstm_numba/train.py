"""The training loop: configuration, optimisation, early stopping, checkpoints and resume.

    from lstm_numba.train import TrainConfig, Trainer
    trainer = Trainer(TrainConfig(epochs=50))      # forecaster on the embedded CO2 series
    trainer.fit(checkpoint="runs/forecast.npz")
    trainer.model.predict(...)

**One seed.** ``TrainConfig.seed`` fixes the initial weights, the shuffling, the
classification split and the dropout masks; each draws from its own stream
(:func:`lstm_numba.models.derive_seed`).

**Each epoch** shuffles the training sequences (char LM: walks its chunks in order),
takes one optimizer step per mini-batch (gradients clipped to ``clip_grad`` global norm
when set), evaluates on the validation split, steps the LR schedule, tracks the best
validation loss, and writes a checkpoint when a path is given. Training stops after
``epochs`` or when the validation loss has not improved for ``patience`` epochs; the
best weights are then restored (``restore_best``).

**Checkpoints** (:mod:`lstm_numba.checkpoint`) hold the parameters, the optimizer state
(arrays under ``optim/``), the best weights so far (``extra/best/<name>``) and a JSON
document with the model and training configuration, the plugins the rnn runs (name,
distribution, version), the progress (epoch, step, best, patience count), the RNG
states (shuffle and dropout), the LR schedule, the data description (normaliser,
columns, vocabulary, file digest) and the per-epoch history. Because the checkpoint is
written at the end of an epoch and holds every piece of state the next epoch reads,
:meth:`Trainer.resume` continues a killed run to exactly (bitwise) the weights an
uninterrupted run reaches.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from lstm_numba import checkpoint as ckpt
from lstm_numba import optim, registry
from lstm_numba.models import build_model, derive_seed
from lstm_numba.tasks import TASKS, TrainingError, file_digest, infer_task, make_task

__all__ = ["TrainConfig", "TrainState", "Trainer", "TASK_DEFAULTS", "TrainingError",
           "load_trained", "read_training_checkpoint", "check_plugins", "MetricsLog", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "lstm-numba-train"

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
}
SCHEDULES = ("none", "cosine", "step")
_RESUMABLE = ("epochs", "patience")  # settings a resumed run may change


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
    dropout: float = 0.0
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

    def resolved(self) -> "TrainConfig":
        """A copy with the task inferred, task defaults filled in and values checked."""
        task = self.task or infer_task(self.data)
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
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
            given += ["window"] if self.task == "classify" and self.window else []
            if given:
                raise ValueError(f"{', '.join(n.replace('_', '-') for n in given)}: only for --task "
                                 f"forecast, not {self.task}")
        if self.task == "charlm":
            if self.embedding_dim:  # None or 0: one-hot input
                positive("embedding_dim")
            if self.bidirectional:
                raise ValueError("a character language model cannot be bidirectional")
        if self.patience is not None and (not isinstance(self.patience, (int, np.integer)) or self.patience < 0):
            raise ValueError(f"patience must be an integer >= 0, got {self.patience!r}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ValueError(f"val-fraction must be in (0, 1), got {self.val_fraction}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.clip_grad is not None and not float(self.clip_grad) > 0:
            raise ValueError(f"clip-grad must be positive (or omitted), got {self.clip_grad}")
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of "
                             f"{', '.join(sorted(optim.OPTIMIZERS))}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        # Plugins by name, so an unknown gate fails before any data is read.
        registry.get_gate(self.gate)
        registry.get_activation(self.activation)
        registry.get_activation(self.recurrent_activation)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class TrainState:
    """Progress of a run (all JSON-able, stored in checkpoints)."""

    epoch: int = 0           # completed epochs
    step: int = 0            # optimizer steps taken
    best_val: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False
    stopped_early: bool = False
    history: list = field(default_factory=list)


class Callbacks:
    """Hooks the command line uses for its progress display; all optional."""

    def epoch_start(self, trainer, epoch: int, n_batches: int) -> None:
        pass

    def batch_end(self, trainer, loss: float, n_sequences: int) -> None:
        pass

    def epoch_end(self, trainer, record: dict) -> None:
        pass


def _json_float(x: float):
    return None if x is None or not math.isfinite(x) else float(x)


def check_plugins(path, plugins: dict) -> None:
    """Raise :class:`~lstm_numba.checkpoint.CheckpointError` naming ``path`` and the plugin
    when a plugin the checkpoint was trained with cannot be loaded here."""
    for role, info in (plugins or {}).items():
        kind = "gate" if role == "gate" else "activation"
        name = info.get("name")
        try:
            entry = registry.REGISTRY.get(kind, name)
        except registry.PluginError as exc:
            dist = info.get("distribution") or "unknown distribution"
            version = info.get("version") or "?"
            raise ckpt.CheckpointError(
                path, f"needs the {kind} plugin {name!r} ({role}; from {dist} {version}), which "
                      f"cannot be loaded here: {exc}. Install the distribution that provides it.") from None
        wanted = info.get("version")
        if wanted and entry.version and wanted != entry.version:
            warnings.warn(f"checkpoint {os.fspath(path)!r} was trained with {kind} plugin {name!r} "
                          f"{wanted}; {entry.version} is installed", stacklevel=3)


def read_training_checkpoint(path):
    """Load a checkpoint written by :meth:`Trainer.save` and check that it is one and that
    every plugin it needs is installed; raises ``CheckpointError`` naming the file."""
    c = ckpt.load_checkpoint(path)
    meta = c.meta
    if meta.get("kind") != CHECKPOINT_KIND:
        raise ckpt.CheckpointError(path, f"not a training checkpoint (kind {meta.get('kind')!r}, "
                                         f"expected {CHECKPOINT_KIND!r})")
    for key in ("model", "train", "plugins", "data", "progress"):
        if key not in meta:
            raise ckpt.CheckpointError(path, f"metadata lacks {key!r}")
    check_plugins(path, meta["plugins"])
    return c


def _model_from_checkpoint(path, c):
    try:
        model = build_model({k: v for k, v in c.meta["model"].items() if k != "rnn"})
        model.load_state_dict(c.params)
    except (ValueError, TypeError, KeyError) as exc:
        raise ckpt.CheckpointError(path, f"parameters do not fit the model: {exc}") from None
    model.eval()
    return model


@dataclass
class Trained:
    """A model loaded for inference, with what it needs to read data like its training."""

    model: object
    task: str
    config: TrainConfig
    data: dict
    meta: dict


def load_trained(path) -> Trained:
    """Load a training checkpoint for inference (``predict``, ``generate``)."""
    c = read_training_checkpoint(path)
    model = _model_from_checkpoint(path, c)
    cfg = TrainConfig.from_dict(c.meta["train"])
    return Trained(model, cfg.task, cfg, c.meta["data"], c.meta)


class Trainer:
    """One training run: the task (data, loss, metrics), the model, the optimizer, the LR
    schedule, the RNGs and the progress. Build it from a config, or with :meth:`resume`
    from a checkpoint; then call :meth:`fit`."""

    def __init__(self, config: TrainConfig, *, _task=None):
        self.config = cfg = config.resolved()
        self.task = _task or make_task(cfg)
        self.model = build_model(self.task.model_config())
        self.optimizer = self._make_optimizer()
        self.schedule = self._make_schedule()
        self.shuffle_rng = np.random.default_rng(derive_seed(cfg.seed, "shuffle"))
        self.state = TrainState()
        self.best_params = None
        self.step_losses = []  # this process's per-step losses (not checkpointed)

    def _make_optimizer(self):
        cfg = self.config
        kw = {}
        if cfg.optimizer == "sgd":
            kw["momentum"] = cfg.momentum
        if cfg.weight_decay is not None:  # None: the optimizer's default (adamw 0.01, else 0)
            kw["weight_decay"] = cfg.weight_decay
        return optim.make_optimizer(cfg.optimizer, self.model.params, cfg.lr, **kw)

    def _make_schedule(self):
        cfg = self.config
        if cfg.schedule == "cosine":
            return optim.make_schedule("cosine", self.optimizer, T_max=cfg.epochs)
        if cfg.schedule == "step":
            return optim.make_schedule("step", self.optimizer, step_size=max(1, cfg.epochs // 3))
        return None

    # ------------------------------------------------------------------ training
    def fit(self, checkpoint=None, callbacks: Callbacks | None = None, metrics=None) -> TrainState:
        """Train until ``epochs`` or early stopping; write ``checkpoint`` after every epoch
        and append one record per epoch to ``metrics`` (a :class:`MetricsLog`)."""
        cb = callbacks or Callbacks()
        cfg, st = self.config, self.state
        while not st.finished and st.epoch < cfg.epochs:
            epoch = st.epoch + 1
            self.model.train()
            self.task.start_epoch()
            batches = self.task.batches(self.shuffle_rng, cfg.batch_size)
            cb.epoch_start(self, epoch, len(batches))
            t0 = time.perf_counter()
            total, seen, n_seq = 0.0, 0, 0
            lr = self.optimizer.lr
            for batch in batches:
                loss, grads, n = self.task.train_step(self.model, batch)
                if not math.isfinite(loss):
                    raise TrainingError(
                        f"training diverged: loss is {loss} at epoch {epoch}, step {st.step + 1}; "
                        "lower --lr or set --clip-grad")
                if cfg.clip_grad:
                    optim.clip_grad_norm(grads, cfg.clip_grad)
                self.optimizer.step(grads)
                st.step += 1
                self.step_losses.append(loss)
                total += loss
                seen += 1
                n_seq += n
                cb.batch_end(self, loss, n)
            seconds = time.perf_counter() - t0
            self.model.eval()
            metrics_ = self.task.evaluate(self.model)
            if self.schedule is not None:
                self.schedule.step()
            val = metrics_["val_loss"]
            improved = math.isfinite(val) and val < st.best_val
            if improved:
                st.best_val, st.best_epoch, st.bad_epochs = val, epoch, 0
                self.best_params = self.model.state_dict()
            else:
                st.bad_epochs += 1
            st.epoch = epoch
            record = {"epoch": epoch, "step": st.step, "train_loss": total / max(seen, 1),
                      **metrics_, "lr": lr, "seconds": seconds,
                      "seq_per_s": n_seq / seconds if seconds > 0 else None, "best": improved}
            st.history.append({k: (_json_float(v) if isinstance(v, float) else v) for k, v in record.items()})
            if cfg.patience and st.bad_epochs >= cfg.patience:
                st.stopped_early = True
            if st.stopped_early or st.epoch >= cfg.epochs:
                self._finish()
            if checkpoint is not None:
                self.save(checkpoint)
            if metrics is not None:
                metrics.write(st.history[-1])
            cb.epoch_end(self, st.history[-1])
        if not st.finished:  # resumed with fewer epochs than already done
            self._finish()
            if checkpoint is not None:
                self.save(checkpoint)
        self.model.eval()
        return st

    def _finish(self) -> None:
        self.state.finished = True
        if self.config.restore_best and self.best_params is not None:
            self.model.load_state_dict(self.best_params)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path) -> None:
        """Write the whole training state to ``path`` (atomically)."""
        from lstm_numba import __version__

        st = self.state
        meta = {
            "kind": CHECKPOINT_KIND,
            "lstm_numba_version": __version__,
            "task": self.config.task,
            # The rnn's own config too, for tools that rebuild only the layer (profile).
            "model": {**self.model.config(), "rnn": self.model.rnn.config()},
            "train": {**self.config.to_dict(),
                      "data": None if self.config.data is None else os.path.abspath(self.config.data)},
            "plugins": self.model.plugins,
            "data": self.task.data_state(),
            "progress": {**{k: v for k, v in dataclasses.asdict(st).items() if k != "history"},
                         "best_val": _json_float(st.best_val)},
            "history": st.history,
            "rng": {"shuffle": ckpt.rng_state_to_json(self.shuffle_rng),
                    "dropout": ckpt.rng_state_to_json(self.model.rnn.rng)},
            "schedule": None if self.schedule is None else self.schedule.state_dict(),
        }
        extra = {} if self.best_params is None else {f"best/{k}": v for k, v in self.best_params.items()}
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        ckpt.save_checkpoint(path, self.model.state_dict(), meta, self.optimizer.state_dict(), extra)

    @classmethod
    def resume(cls, path, **overrides) -> "Trainer":
        """Rebuild a run from its checkpoint, ready to :meth:`fit` the remaining epochs.

        ``overrides`` may change only ``epochs`` and ``patience``. A finished run comes back
        with ``state.finished`` set (there is nothing left to do)."""
        c = read_training_checkpoint(path)
        meta = c.meta
        saved = TrainConfig.from_dict(meta["train"])
        bad = sorted(set(overrides) - set(_RESUMABLE))
        if bad:
            raise ValueError(f"cannot change {', '.join(bad)} when resuming; only {', '.join(_RESUMABLE)}")
        cfg = dataclasses.replace(saved, **overrides)
        data = meta["data"]
        data_path = cfg.data
        if data_path is not None:
            if not os.path.isfile(data_path):
                raise ckpt.CheckpointError(path, f"training data {data_path!r} is missing; "
                                                 "resuming needs the same file")
        trainer = cls(cfg)
        current = file_digest(trainer.task.path)
        if data.get("sha256") and current != data["sha256"]:
            raise ckpt.CheckpointError(path, f"training data {trainer.task.path!r} changed since "
                                             "the checkpoint was written (SHA-256 differs)")
        try:
            trainer.model.load_state_dict(c.params)
            if c.optim_state is None:
                raise ValueError("no optimizer state")
            trainer.optimizer.load_state_dict(c.optim_state)
            if trainer.schedule is not None:
                trainer.schedule.load_state_dict(meta["schedule"])
            trainer.shuffle_rng = ckpt.rng_from_json(meta["rng"]["shuffle"])
            trainer.model.rnn.rng.bit_generator.state = ckpt.rng_from_json(
                meta["rng"]["dropout"]).bit_generator.state
            best = {k[len("best/"):]: v for k, v in c.extra.items() if k.startswith("best/")}
            if best:
                trainer.best_params = {k: np.array(v, dtype=trainer.model.params[k].dtype) for k, v in best.items()}
            progress = dict(meta["progress"])
            progress["best_val"] = math.inf if progress.get("best_val") is None else progress["best_val"]
            trainer.state = TrainState(**progress, history=list(meta.get("history", [])))
        except (ValueError, TypeError, KeyError) as exc:
            raise ckpt.CheckpointError(path, f"cannot resume: {exc}") from None
        return trainer


class MetricsLog:
    """Per-epoch records to a ``.csv`` or ``.jsonl`` file. A new run truncates the file; a
    resumed run rewrites it from the checkpoint's history first, so the log always matches
    the epochs the weights went through."""

    def __init__(self, path, history=()):
        self.path = os.fspath(path)
        ext = os.path.splitext(self.path)[1].lower()
        if ext not in (".csv", ".jsonl"):
            raise ValueError(f"--metrics {self.path}: use a .csv or .jsonl file name")
        self.format = ext[1:]
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self.fields = None
        with open(self.path, "w", encoding="utf-8", newline=""):
            pass
        for record in history:
            self.write(record)

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            if self.format == "jsonl":
                f.write(json.dumps(record) + "\n")
                return
            if self.fields is None:
                self.fields = list(record)
                csv.writer(f).writerow(self.fields)
            csv.writer(f).writerow(["" if record.get(k) is None else record.get(k) for k in self.fields])
