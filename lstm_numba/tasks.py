"""Training tasks: the data, the model shape, the loss and the validation metrics of each
kind of run the trainer (:mod:`lstm_numba.train`) knows.

- :class:`ForecastTask`: a numeric CSV (or the embedded CO2 series) cut into sliding
  windows; the model reads ``window`` steps and predicts the next ``horizon`` values of
  the target column (one multi-output head), trained with MSE. Validation reports RMSE
  and MAE in original units beside the naive forecasts (last value, and seasonal naive
  when a period is known).
- :class:`ClassifyTask`: labelled sequences (``.npz`` or long CSV) classified from the
  last valid step, trained with softmax cross-entropy; validation reports accuracy.
- :class:`CharLMTask`: a UTF-8 text (or the embedded Alice text) as B parallel streams
  of characters, trained by truncated BPTT over ``window``-step chunks with the state
  carried across chunks (and reset at each epoch start); validation reports bits per
  character.

A task is built from a resolved :class:`~lstm_numba.train.TrainConfig`. ``data_state()``
is what a checkpoint must remember to use the model later (normaliser, vocabulary,
column names) and ``from_state`` rebuilds the inference side without the data.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from lstm_numba import data as D
from lstm_numba.losses import mse_loss, softmax_cross_entropy
from lstm_numba.models import derive_seed

__all__ = ["ForecastTask", "ClassifyTask", "CharLMTask", "TASKS", "make_task", "infer_task",
           "file_digest", "TrainingError"]


class TrainingError(ValueError):
    """Training cannot go on (bad data for the task, or a diverging run)."""


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
    return list(D.iterate_minibatches(n, batch_size, rng, shuffle=shuffle))


# ----------------------------------------------------------------------------- forecast


class ForecastTask:
    """Sliding-window forecasting of one target column ``horizon`` steps ahead.

    With ``relative`` (the default) every window is expressed relative to its own last
    observed values: inputs ``x - x[-1]`` and targets ``y - x[-1, target]``, in units of
    the training standard deviation. The model then learns the shape of what comes next
    rather than the level, so a trending series (CO2) never leaves the range it was
    trained on. Predictions add the last value back.

    With ``seq2seq`` the head runs at every step and every step ``t`` of a training
    window is trained to predict the ``horizon`` values after ``t``
    (sequence-to-sequence); validation and prediction use the last step.
    """

    name = "forecast"
    loss_name = "mse"

    def __init__(self, cfg):
        from lstm_numba import datasets

        self.cfg = cfg
        self.path = cfg.data or datasets.series_path(datasets.DEFAULT_SERIES)
        self.embedded = cfg.data is None
        cols = D.read_csv_columns(self.path, cfg.columns, cfg.target)
        names = cols.names
        if cfg.target is None:
            if len(names) != 1:
                raise TrainingError(
                    f"{self.path}: {len(names)} numeric columns ({', '.join(names)}); choose "
                    "the one to forecast with --target")
            target_index = 0
        else:
            target_index = cols.target_index
        self.columns = names
        self.target = names[target_index]
        self.target_index = target_index
        self.season = cfg.season
        self.values = cols.values
        try:
            self.data = D.prepare_forecast(cols.values, target_index, cfg.window, cfg.horizon,
                                           cfg.val_fraction, seasonal_period=self.season)
        except ValueError as exc:
            raise TrainingError(f"{self.path}: {exc}") from None
        self.normalizer = self.data.normalizer
        d = self.data
        self.x_train, self.y_train = self._transform(d.x_train, d.y_train)
        self.x_val, self.y_val = self._transform(d.x_val, d.y_val)
        if cfg.seq2seq:
            self.y_train_seq = self._step_targets(d.n_train_points)
        self.dtype = np.dtype(cfg.dtype)
        self.x_train = self.x_train.astype(self.dtype)
        self.y_train = self.y_train.astype(self.dtype)
        self.x_val = self.x_val.astype(self.dtype)
        if cfg.seq2seq:
            self.y_train_seq = self.y_train_seq.astype(self.dtype)

    # ------------------------------------------------------------------ data
    def _transform(self, x, y):
        if not self.cfg.relative:
            return x, y
        last = x[:, -1:, :]
        return x - last, y - last[:, 0, self.target_index][:, None]

    def _step_targets(self, n_train: int) -> np.ndarray:
        """``(n, window, horizon)``: the ``horizon`` normalised target values after every
        step of every training window (relative to that step's value when relative)."""
        scaled = self.normalizer.transform(self.values[:n_train])[:, self.target_index]
        w, h = self.cfg.window, self.cfg.horizon
        n = len(self.x_train)
        step_t = np.arange(n)[:, None] + np.arange(w)[None, :]  # time of step t of window i
        idx = step_t[:, :, None] + 1 + np.arange(h)[None, None, :]
        y = scaled[idx]
        if self.cfg.relative:
            y = y - scaled[step_t][:, :, None]
        return y

    @property
    def input_size(self) -> int:
        return len(self.columns)

    def model_config(self) -> dict:
        c = self.cfg
        return dict(type="forecaster", input_size=self.input_size, output_size=c.horizon,
                    return_sequences=bool(c.seq2seq), **_rnn_kwargs(c))

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    def data_state(self) -> dict:
        return {"path": None if self.embedded else os.path.abspath(self.path),
                "embedded": "co2" if self.embedded else None,
                "sha256": file_digest(self.path), "columns": self.columns,
                "target": self.target, "target_index": self.target_index,
                "normalizer": self.normalizer.to_dict(), "relative": bool(self.cfg.relative),
                "window": self.cfg.window, "horizon": self.cfg.horizon, "season": self.season,
                "n_train_points": int(self.data.n_train_points)}

    # ------------------------------------------------------------------ training
    def start_epoch(self):
        pass

    def batches(self, rng, batch_size):
        return _batch_rows(self.n_train, batch_size, rng)

    def train_step(self, model, rows):
        pred = model.forward(self.x_train[rows])
        target = self.y_train_seq[rows] if self.cfg.seq2seq else self.y_train[rows]
        loss, dpred = mse_loss(pred, target)
        return loss, model.backward(dpred), len(rows)

    def _predict_last(self, model, x):
        out = model.predict(x)
        return out[:, -1] if self.cfg.seq2seq else out

    def evaluate(self, model) -> dict:
        pred = self._predict_last(model, self.x_val).astype(np.float64)
        loss = float(np.mean((pred - self.y_val) ** 2))
        orig = self.to_original(pred, self.data.x_val)
        err = orig - self.data.y_val_orig
        return {"val_loss": loss, "val_rmse": float(np.sqrt(np.mean(err ** 2))),
                "val_mae": float(np.mean(np.abs(err)))}

    def to_original(self, pred, x_norm):
        """Model outputs -> original units, given the normalised (not relative) windows."""
        return forecast_to_original(pred, x_norm, self.normalizer, self.target_index,
                                    self.cfg.relative)

    def baselines(self) -> dict:
        """Validation RMSE and MAE of the naive forecasts, in original units."""
        d = self.data
        out = {}
        for label, pred in (("naive last value", d.naive_last),
                            (f"seasonal naive (period {self.season})", d.naive_seasonal)):
            if pred is None:
                continue
            err = pred - d.y_val_orig
            out[label] = {"rmse": float(np.sqrt(np.mean(err ** 2))),
                          "mae": float(np.mean(np.abs(err)))}
        return out

    def describe_validation(self) -> str:
        n, h = self.data.y_val_orig.shape
        return (f"{n} windows x {h} steps ahead of {self.target!r}, "
                "original units")


def forecast_to_original(pred, x_norm, normalizer, target_index, relative):
    pred = np.asarray(pred, dtype=np.float64)
    if relative:
        pred = pred + np.asarray(x_norm, dtype=np.float64)[:, -1, target_index][:, None]
    return normalizer.inverse_transform(pred, column=target_index)


def forecast_windows(values, normalizer, target_index, window, relative, dtype):
    """The last ``window`` points of ``values`` ``(N, F)`` as one model input ``(1, W, F)``
    and its normalised form (for :func:`forecast_to_original`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if len(values) < window:
        raise TrainingError(f"series too short: the model reads {window} steps, got {len(values)}")
    x_norm = normalizer.transform(values[-window:])[None]
    x = x_norm - x_norm[:, -1:, :] if relative else x_norm
    return x.astype(dtype), x_norm


# ----------------------------------------------------------------------------- classify


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
        mask = np.arange(seqs.x.shape[1])[None, :] < seqs.lengths[:, None]
        self.normalizer = D.Normalizer().fit(seqs.x[train][mask[train]])
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
        return loss, model.backward(dlogits), len(rows)

    def evaluate(self, model) -> dict:
        logits = model.predict(self.x_val, self.len_val).astype(np.float64)
        loss, _ = softmax_cross_entropy(logits, self.y_val)
        return {"val_loss": loss, "val_accuracy": float(np.mean(logits.argmax(1) == self.y_val))}

    def describe_validation(self) -> str:
        return f"{len(self.y_val)} held-out sequences, {self.num_classes} classes"


# ----------------------------------------------------------------------------- charlm


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
    streams (:func:`~lstm_numba.data.batchify_stream`) walked in chunks of ``window``
    characters (:func:`~lstm_numba.data.iterate_bptt`); the final state of each chunk is
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
        text = read_text(self.path)
        self.vocab = D.CharVocab.from_text(text)
        ids = self.vocab.encode(text)
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
        kw = _rnn_kwargs(self.cfg)
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
        inputs, targets = self.chunks[index]
        logits, self.state = model.forward(inputs.T, self.state)
        b, t, v = logits.shape
        loss, dlogits = softmax_cross_entropy(logits.reshape(b * t, v), targets.T.reshape(-1))
        return loss, model.backward(dlogits.reshape(b, t, v)), b

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


# ----------------------------------------------------------------------------- shared


def _rnn_kwargs(cfg) -> dict:
    return dict(hidden_size=cfg.hidden_size, num_layers=cfg.layers, bidirectional=cfg.bidirectional,
                dropout=cfg.dropout, dtype=cfg.dtype, seed=derive_seed(cfg.seed, "model"),
                gate=cfg.gate, activation=cfg.activation,
                recurrent_activation=cfg.recurrent_activation)


TASKS = {cls.name: cls for cls in (ForecastTask, ClassifyTask, CharLMTask)}


def make_task(cfg):
    """The task object for a resolved config."""
    return TASKS[cfg.task](cfg)
