"""Series forecasting data: sliding windows, the training-statistics normaliser, the time
split and the prepared train/validation windows with their naive baselines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class SeriesWindows(NamedTuple):
    """Sliding windows for forecasting: inputs ``x`` ``(n, window, F)`` and the next
    ``horizon`` values of the target column ``y`` ``(n, horizon)``."""

    x: np.ndarray
    y: np.ndarray


def _as_2d(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"series values must be (N,) or (N, F), got shape {values.shape}")
    return values


def make_windows(values, target_index: int, window: int, horizon: int,
                 step: int = 1) -> SeriesWindows:
    """Cut ``values`` ``(N, F)`` (or ``(N,)``) into sliding windows.

    Window ``i`` starts at ``s = i * step``: ``x[i] = values[s : s + window]`` and
    ``y[i] = values[s + window : s + window + horizon, target_index]``. There are
    ``(N - window - horizon) // step + 1`` windows; the arrays are fresh copies.
    """
    values = _as_2d(values)
    n, f = values.shape
    if window < 1 or horizon < 1 or step < 1:
        raise ValueError(
            f"window, horizon and step must be >= 1, got {window}, {horizon}, {step}"
        )
    if not -f <= target_index < f:
        raise ValueError(f"target_index {target_index} out of range for {f} feature(s)")
    need = window + horizon
    if n < need:
        raise ValueError(
            f"series too short: window {window} + horizon {horizon} needs at least "
            f"{need} points, got {n}"
        )
    starts = np.arange(0, n - need + 1, step)
    x = values[starts[:, None] + np.arange(window)]
    y = values[starts[:, None] + window + np.arange(horizon), target_index]
    return SeriesWindows(x, y)


class Normalizer:
    """Per-feature z-score: ``(v - mean) / std``; a constant feature gets ``std = 1``.

    Fit it on the training part only. ``column=j`` in :meth:`transform` and
    :meth:`inverse_transform` treats an array of any shape as values of feature ``j`` (for
    targets and predictions); without it the last axis must be the F features.
    """

    def __init__(self, mean=None, std=None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)

    def fit(self, train_values) -> "Normalizer":
        """Compute mean and std of ``train_values`` ``(N, F)`` or ``(N,)``; returns self."""
        values = _as_2d(train_values)
        std = values.std(axis=0)
        self.mean = values.mean(axis=0)
        self.std = np.where(std > 0, std, 1.0)
        return self

    def _stats(self, column: int | None):
        if self.mean is None:
            raise RuntimeError("Normalizer is not fitted; call fit(train_values) first")
        if column is None:
            return self.mean, self.std
        return self.mean[column], self.std[column]

    def transform(self, values, column: int | None = None) -> np.ndarray:
        """Normalise ``values`` (``(..., F)``, or any shape with ``column``)."""
        mean, std = self._stats(column)
        return (np.asarray(values, dtype=np.float64) - mean) / std

    def inverse_transform(self, values, column: int | None = None) -> np.ndarray:
        """Back to original units (``(..., F)``, or any shape with ``column``)."""
        mean, std = self._stats(column)
        return np.asarray(values, dtype=np.float64) * std + mean

    def to_dict(self) -> dict:
        """JSON-serialisable state: ``{"mean": [...], "std": [...]}``."""
        mean, std = self._stats(None)
        return {"mean": mean.tolist(), "std": std.tolist()}

    @classmethod
    def from_dict(cls, state: dict) -> "Normalizer":
        """Inverse of :meth:`to_dict`."""
        return cls(state["mean"], state["std"])


def time_split(n: int, val_fraction: float) -> tuple[slice, slice]:
    """Time-ordered split of ``n`` points: ``(train, val)`` slices, the last
    ``round(n * val_fraction)`` points (at least 1) for validation. No shuffling."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise ValueError(f"cannot split {n} points with val_fraction {val_fraction}")
    return slice(0, n - n_val), slice(n - n_val, n)


@dataclass
class ForecastData:
    """Everything a forecasting run needs (see :func:`prepare_forecast`).

    ``x_*`` ``(n, window, F)`` and ``y_*`` ``(n, horizon)`` are normalised; ``y_val_orig``,
    ``naive_last`` and ``naive_seasonal`` ``(n_val, horizon)`` are in original units
    (``naive_seasonal`` is None without a seasonal period).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    normalizer: Normalizer
    target_index: int
    n_train_points: int
    y_val_orig: np.ndarray
    naive_last: np.ndarray
    naive_seasonal: np.ndarray | None


def prepare_forecast(values, target_index: int, window: int, horizon: int,
                     val_fraction: float, seasonal_period: int | None = None,
                     step: int = 1) -> ForecastData:
    """Split, normalise and window a series for forecasting, and compute naive baselines.

    ``values`` ``(N, F)`` or ``(N,)``. The raw series is split in time first
    (:func:`time_split`); the :class:`Normalizer` is fitted on the training points only.
    Training windows lie wholly in the training part. Validation windows take their
    context from the last ``window`` points before each target (so the first ones reach
    back into the training part) and every validation target is a validation point; no
    validation target is ever a training target.

    Baselines for each validation window whose targets start at time ``t0``, horizon step
    ``h = 1..horizon`` (original units): last-value naive predicts ``v[t0 - 1]``;
    seasonal naive with period ``P`` predicts ``v[t0 + h - 1 - P * ceil(h / P)]``, the
    latest value one or more whole seasons back that is known at the forecast origin.
    """
    values = _as_2d(values)
    n = len(values)
    train, val = time_split(n, val_fraction)
    n_train = train.stop
    if n_train < window + horizon:
        raise ValueError(
            f"training part too short: window {window} + horizon {horizon} needs at "
            f"least {window + horizon} points, got {n_train} of {n} "
            f"(val_fraction {val_fraction})"
        )
    if n - n_train < horizon:
        raise ValueError(
            f"validation part too short: horizon {horizon} needs at least {horizon} "
            f"points, got {n - n_train} of {n} (val_fraction {val_fraction})"
        )
    if seasonal_period is not None and not 1 <= seasonal_period <= n_train:
        raise ValueError(
            f"seasonal_period must be in [1, {n_train}] (the training length), "
            f"got {seasonal_period}"
        )
    norm = Normalizer().fit(values[train])
    scaled = norm.transform(values)
    tr = make_windows(scaled[train], target_index, window, horizon, step)
    va = make_windows(scaled[n_train - window:], target_index, window, horizon, step)

    target = values[:, target_index]
    t0 = n_train + np.arange(0, n - n_train - horizon + 1, step)  # first target times
    h = np.arange(1, horizon + 1)
    y_val_orig = target[t0[:, None] + h - 1]
    naive_last = np.repeat(target[t0 - 1][:, None], horizon, axis=1)
    naive_seasonal = None
    if seasonal_period is not None:
        back = seasonal_period * -(-h // seasonal_period)  # P * ceil(h / P)
        naive_seasonal = target[t0[:, None] + h - 1 - back]
    return ForecastData(tr.x, tr.y, va.x, va.y, norm, target_index, n_train,
                        y_val_orig, naive_last, naive_seasonal)
