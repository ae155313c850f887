"""The training loop: configuration, optimisation, early stopping, checkpoints and resume.

    from lstm_numba.training import optim
    from lstm_numba.training import schedules
    from lstm_numba.training.config import TrainConfig
    from lstm_numba.training.trainer import Trainer
    trainer = Trainer(TrainConfig(epochs=50))      # forecaster on the embedded CO2 series
    trainer.fit(checkpoint="runs/co2.npz")
    trainer.model.predict(...)

**One seed.** ``TrainConfig.seed`` fixes the initial weights, the shuffling, the
classification split and the dropout masks; each draws from its own stream
(:func:`lstm_numba.nn.models.derive_seed`).

**Each epoch** shuffles the training sequences (char LM: walks its chunks in order),
takes one optimizer step per mini-batch (gradients clipped to ``clip_grad`` global norm
when set), evaluates on the validation split, steps the LR schedule, tracks the best
validation loss, and writes a checkpoint when a path is given. Training stops after
``epochs`` or when the validation loss has not improved for ``patience`` epochs; the
best weights are then restored (``restore_best``).

**Data parallelism.** ``TrainConfig.shards`` (and ``Trainer(config, client=Client(...))``
for a Dask cluster) cuts each global batch into shards whose gradients are summed in shard
order before the one optimizer step (:mod:`lstm_numba.training.distributed`).

**Checkpoints** (:mod:`lstm_numba.training.checkpoint`) hold the parameters, the optimizer state
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

import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from lstm_numba import registry
from lstm_numba.config import package_version
from lstm_numba.nn import validation
from lstm_numba.nn.models import build_model, derive_seed
from lstm_numba.training import checkpoint as ckpt
from lstm_numba.training import checkpoint_schema as schema
from lstm_numba.training import optim, schedules
from lstm_numba.training.config import (
    CHECKPOINT_KIND,
    RESUMABLE,
    TrainConfig,
    TrainingError,
)
from lstm_numba.training.tasks.common import NonFiniteLoss
from lstm_numba.training.tasks.registry import make_task


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


def _first_non_finite(arrays: dict):
    """The first key of ``arrays`` whose values are not all finite, or None (one cheap sum
    each; only a non-finite sum, which an overflow can also give, looks closer)."""
    with np.errstate(all="ignore"):
        for key, array in arrays.items():
            if not math.isfinite(float(np.sum(array))) and not np.isfinite(array).all():
                return key
    return None


def _json_float(x: float):
    return None if x is None or not math.isfinite(x) else float(x)


def check_plugins(path, plugins: dict) -> None:
    """Raise :class:`~lstm_numba.training.checkpoint.CheckpointError` naming ``path`` and the plugin
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
    schema.check_plugin_entries(path, meta["plugins"])
    check_plugins(path, meta["plugins"])  # a missing plugin first: the most useful message
    schema.check_structure(path, meta)
    schema.check_arrays(path, c, registry.REGISTRY.get("gate", meta["model"]["gate"]).obj)
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

    def __init__(self, config: TrainConfig, *, client=None, workers=None, _task=None):
        cfg = config.resolved()
        if client is not None and cfg.shards is None:  # default: one shard per worker
            from lstm_numba.training.distributed import worker_threads

            cfg = dataclasses.replace(cfg, shards=max(1, len(worker_threads(client, workers))))
            cfg._check()
        self.config = cfg
        self.task = _task or make_task(cfg)
        self.model = build_model(self.task.model_config())
        self.shards = self._make_shards(client, workers)
        self.optimizer = self._make_optimizer()
        self.schedule = self._make_schedule()
        self.shuffle_rng = np.random.default_rng(derive_seed(cfg.seed, "shuffle"))
        self.state = TrainState()
        self.best_params = None
        self.step_losses = []  # this process's per-step losses (not checkpointed)

    def _make_shards(self, client, workers):
        """Data parallelism (:mod:`lstm_numba.training.shards`, and
        :mod:`lstm_numba.training.distributed` on a cluster): None when unsharded."""
        cfg = self.config
        if cfg.shards is None:
            return None
        if client is None:
            from lstm_numba.training.shards import InProcessShards

            return InProcessShards(self.task, cfg.shards, cfg.seed)
        from lstm_numba.training import distributed

        return distributed.ClusterShards(client, self.task, self.model, cfg.shards, cfg.seed,
                                         workers=workers)

    def _train_step(self, batch):
        if self.shards is None:
            return self.task.train_step(self.model, batch)
        return self.shards.step(self.model, batch, self.state.step)

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
            return schedules.make_schedule("cosine", self.optimizer, T_max=cfg.epochs)
        if cfg.schedule == "step":
            return schedules.make_schedule("step", self.optimizer, step_size=max(1, cfg.epochs // 3))
        return None

    # ------------------------------------------------------------------ training
    def fit(self, checkpoint=None, callbacks: Callbacks | None = None, metrics=None) -> TrainState:
        """Train until ``epochs`` or early stopping; write ``checkpoint`` after every epoch
        and append one record per epoch to ``metrics`` (a :class:`MetricsLog`)."""
        try:
            return self._fit(checkpoint, callbacks, metrics)
        finally:
            if self.shards is not None:
                self.shards.close()

    def _fit(self, checkpoint, callbacks, metrics) -> TrainState:
        cb = callbacks or Callbacks()
        cfg, st = self.config, self.state
        if checkpoint is not None:
            ckpt.clean_stale_temps(checkpoint)  # what killed writes left behind
        while not st.finished and st.epoch < cfg.epochs:
            epoch = st.epoch + 1
            self.model.train()
            self.task.start_epoch()
            if self.shards is not None:
                self.shards.start_epoch()
            batches = self.task.batches(self.shuffle_rng, cfg.batch_size)
            cb.epoch_start(self, epoch, len(batches))
            t0 = time.perf_counter()
            total, seen, n_seq = 0.0, 0, 0
            lr = self.optimizer.lr
            for batch in batches:
                try:
                    with np.errstate(all="ignore"):  # a diverging step is reported below, once
                        loss, grads, n = self._train_step(batch)
                except NonFiniteLoss as exc:
                    raise self._diverged(epoch, f"the loss is {exc.loss}", checkpoint) from None
                if not math.isfinite(loss):
                    raise self._diverged(epoch, f"the loss is {loss}", checkpoint)
                bad = _first_non_finite(grads)
                if bad is not None:
                    raise self._diverged(epoch, f"the gradient of {bad} is not finite", checkpoint)
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

    def _diverged(self, epoch: int, what: str, checkpoint) -> TrainingError:
        """The error that ends a diverging run: where, what went non-finite, the likely
        cause (weights overflowed, the input projection overflowed, or the recurrent
        layer's plugins produced NaN or Inf from finite numbers) and which checkpoint is kept."""
        st, rnn = self.state, self.model.rnn
        bad_weight = _first_non_finite(self.model.params)
        tapes = rnn._last[0].values() if rnn._last is not None else ()
        if bad_weight is not None:
            cause = (f"the weights are no longer finite ({bad_weight} first): the last update overflowed, "
                     f"lower the learning rate (lr {self.config.lr:g}) or set clip_grad")
        elif any(not validation.all_finite(np.ascontiguousarray(t.gx)) for t in tapes):
            cause = ("the recurrent layer's input projection overflowed with finite inputs and weights: "
                     "lower the learning rate or normalise the inputs")
        elif any(not validation.all_finite(np.ascontiguousarray(t.states)) for t in tapes):
            plugins = rnn.plugins
            gate = plugins["gate"]
            cause = (f"the gate {gate['name']!r} ({gate['distribution']} {gate['version']}) produced NaN or "
                     f"Inf from finite inputs and weights (activations {plugins['activation']['name']!r}, "
                     f"{plugins['recurrent_activation']['name']!r}); check it with `lstm-numba plugins check "
                     f"{gate['name']}`")
        else:
            largest = max(float(np.abs(v).max(initial=0.0)) for v in self.model.params.values())
            cause = (f"the largest weight is {largest:.3g}: lower the learning rate (lr {self.config.lr:g}) "
                     "or set clip_grad")
        if checkpoint is None:
            kept = "no checkpoint path was given"
        elif st.epoch:
            kept = f"the last good checkpoint {os.fspath(checkpoint)} (epoch {st.epoch}) is kept"
        else:
            kept = "no epoch completed, so no checkpoint was written"
        return TrainingError(f"training diverged at epoch {epoch}, step {st.step + 1}: {what}; {cause}; {kept}")

    def _finish(self) -> None:
        self.state.finished = True
        if self.config.restore_best and self.best_params is not None:
            self.model.load_state_dict(self.best_params)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path) -> None:
        """Write the whole training state to ``path`` (atomically)."""

        st = self.state
        meta = {
            "kind": CHECKPOINT_KIND,
            "lstm_numba_version": package_version(),
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
    def resume(cls, path, *, client=None, workers=None, **overrides) -> "Trainer":
        """Rebuild a run from its checkpoint, ready to :meth:`fit` the remaining epochs.

        ``overrides`` may change only ``epochs`` and ``patience``. A finished run comes back
        with ``state.finished`` set (there is nothing left to do). A sharded run may resume
        in one process or on any cluster (its ``shards`` are kept); an unsharded one only
        in one process."""
        c = read_training_checkpoint(path)
        meta = c.meta
        saved = TrainConfig.from_dict(meta["train"])
        if client is not None and saved.shards is None:
            raise ckpt.CheckpointError(path, "was trained unsharded in one process; resume it without a "
                                             "cluster (the shards fix a run's result, so they cannot change)")
        bad = sorted(set(overrides) - set(RESUMABLE))
        if bad:
            raise ValueError(f"cannot change {', '.join(bad)} when resuming; only {', '.join(RESUMABLE)}")
        cfg = dataclasses.replace(saved, **overrides)
        data = meta["data"]
        data_path = cfg.data
        if data_path is not None:
            if not os.path.isfile(data_path):
                raise ckpt.CheckpointError(path, f"training data {data_path!r} is missing; "
                                                 "resuming needs the same file")
        trainer = cls(cfg, client=client, workers=workers)
        current = trainer.task.data_state()["sha256"]
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
