"""The forecasting task: windows of a numeric series, MSE, RMSE and MAE beside naive forecasts.
"""

from __future__ import annotations

import os

import numpy as np

from lstm_numba.nn.losses import mse_loss
from lstm_numba.training import data as D
from lstm_numba.training.config import TrainingError
from lstm_numba.training.tasks.common import (
    batch_rows,
    check_loss,
    file_digest,
    rnn_kwargs,
)


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
                    return_sequences=bool(c.seq2seq), **rnn_kwargs(c))

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
        return batch_rows(self.n_train, batch_size, rng)

    def train_step(self, model, rows):
        pred = model.forward(self.x_train[rows])
        target = self.y_train_seq[rows] if self.cfg.seq2seq else self.y_train[rows]
        loss, dpred = mse_loss(pred, target)
        return check_loss(loss), model.backward(dpred), len(rows)

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

    # ------------------------------------------------------------------ inference
    @staticmethod
    def forecast(model, state: dict, values) -> np.ndarray:
        """The next ``horizon`` values of the target, in original units, after the last row of
        ``values`` ``(N, F)`` (the training columns), prepared from the checkpoint's ``state``
        (:meth:`data_state`)."""
        normalizer = D.Normalizer.from_dict(state["normalizer"])
        target_index, relative = state["target_index"], state["relative"]
        x, x_norm = forecast_windows(values, normalizer, target_index, state["window"], relative, model.dtype)
        pred = model.predict(x)
        if pred.ndim == 3:  # sequence-to-sequence: the last step forecasts the horizon
            pred = pred[:, -1]
        return forecast_to_original(pred, x_norm, normalizer, target_index, relative)[0]

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
