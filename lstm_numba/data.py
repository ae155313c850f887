"""Data loading and preparation for the training stack (pure NumPy, cheap to import).

Three kinds of data:

- **Series forecasting:** :func:`read_csv_columns` reads numeric columns from a CSV,
  :func:`prepare_forecast` splits in time, normalises with training statistics only, cuts
  sliding windows (:func:`make_windows`) and computes naive baselines.
- **Character language modelling:** :class:`CharVocab`, :func:`make_char_sequences`,
  :func:`batchify_stream` and :func:`iterate_bptt` (truncated BPTT over parallel streams).
- **Sequence classification:** :func:`load_labelled` reads ``.npz`` or long-format CSV.

:func:`iterate_minibatches` shuffles with a caller-owned ``numpy.random.Generator``.
Every error names the file, column and line it is about.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np

# ----------------------------------------------------------------------------- CSV


def _read_table(path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line_number, cells)`` data rows of a CSV; blank lines are skipped."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header row")
        header = [h.strip() for h in header]
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise ValueError(
                    f"{path}: line {reader.line_num} has {len(cells)} cells, "
                    f"the header has {len(header)}"
                )
            rows.append((reader.line_num, cells))
    if not rows:
        raise ValueError(f"{path}: no data rows after the header")
    return header, rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_float(cell: str, path, column: str, line: int) -> float:
    text = cell.strip()
    if not text:
        raise ValueError(f"{path}: empty cell in column {column!r} at line {line}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{path}: non-numeric value {text!r} in column {column!r} at line {line}"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: {text} in column {column!r} at line {line}")
    return value


def _column_index(header: list[str], name: str, path) -> int:
    if name not in header:
        raise ValueError(
            f"{path}: no column {name!r}; available: {', '.join(map(repr, header))}"
        )
    return header.index(name)


class Columns(NamedTuple):
    """Numeric columns read from a CSV: ``values`` ``(N, F)`` float64, their ``names``
    (length F), and ``target_index`` (position of the target in ``names``, or None)."""

    values: np.ndarray
    names: list[str]
    target_index: int | None


def read_csv_columns(path, columns: Sequence[str] | None = None,
                     target: str | None = None) -> Columns:
    """Read numeric columns of a CSV with a header row.

    ``columns``: names to read, in that order. None reads every column whose first data cell
    is a number (so a leading ``date`` column is skipped); the rest of such a column must be
    numeric too. ``target``: a column name; it is appended to ``columns`` if missing there.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for an
    unknown column (listing the available ones), an empty, non-numeric, NaN or infinite cell
    (naming column and line), a ragged row, or no data rows.
    """
    header, rows = _read_table(path)
    if columns is None:
        first = rows[0][1]
        names = [h for h, cell in zip(header, first) if _is_number(cell.strip())]
        if not names:
            raise ValueError(f"{path}: no numeric column (first data row: {first})")
    else:
        names = list(columns)
    if target is not None and target not in names:
        names.append(target)
    if not names:
        raise ValueError(f"{path}: no columns selected")
    idx = [_column_index(header, name, path) for name in names]
    values = np.empty((len(rows), len(names)), dtype=np.float64)
    for r, (line, cells) in enumerate(rows):
        for c, (i, name) in enumerate(zip(idx, names)):
            values[r, c] = _parse_float(cells[i], path, name, line)
    return Columns(values, names, None if target is None else names.index(target))


# ---------------------------------------------------------------------- forecasting


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


# ----------------------------------------------------------------------------- text


class CharVocab:
    """Character vocabulary: ids ``0..size-1`` for the sorted distinct characters."""

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars) or any(len(c) != 1 for c in self.chars):
            raise ValueError("vocabulary must be distinct single characters")
        self._index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        """Vocabulary of every character in ``text``."""
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def size(self) -> int:
        """Number of characters."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``(len(text),)`` int64 ids; a character outside the vocabulary raises."""
        try:
            return np.fromiter((self._index[c] for c in text), dtype=np.int64,
                               count=len(text))
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        """Text of a 1-D sequence of ids."""
        return "".join(self.chars[i] for i in np.asarray(ids).ravel())

    def to_dict(self) -> dict:
        """JSON-serialisable state: ``{"chars": [...]}``."""
        return {"chars": list(self.chars)}

    @classmethod
    def from_dict(cls, state: dict) -> "CharVocab":
        """Inverse of :meth:`to_dict`."""
        return cls(state["chars"])


def make_char_sequences(ids, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping training sequences from a 1-D id stream.

    Returns ``(inputs, targets)``, both ``(n, seq_len)`` int64 with
    ``n = (len(ids) - 1) // seq_len``; ``targets`` is ``inputs`` shifted one character on.
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise ValueError(
            f"text too short: seq_len {seq_len} needs at least {seq_len + 1} "
            f"characters, got {len(ids)}"
        )
    inputs = ids[: n * seq_len].reshape(n, seq_len)
    targets = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return inputs, targets


def batchify_stream(ids, batch_size: int) -> np.ndarray:
    """Split a 1-D id stream into ``batch_size`` contiguous parallel streams.

    Returns ``(n_steps, batch_size)`` with ``n_steps = len(ids) // batch_size``: column
    ``b`` is ``ids[b * n_steps : (b + 1) * n_steps]``; the remainder is dropped (as the
    PyTorch word_language_model example does).
    """
    ids = np.asarray(ids, dtype=np.int64).ravel()
    n_steps = len(ids) // batch_size if batch_size >= 1 else 0
    if n_steps < 2:
        raise ValueError(
            f"stream of {len(ids)} ids too short for batch_size {batch_size} "
            f"(needs at least {2 * max(batch_size, 1)})"
        )
    return np.ascontiguousarray(ids[: n_steps * batch_size].reshape(batch_size, n_steps).T)


def iterate_bptt(stream: np.ndarray, bptt: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Consecutive truncated-BPTT chunks of a :func:`batchify_stream` array.

    Yields ``(inputs, targets)``, both ``(L, B)`` with ``L <= bptt``: ``inputs`` are rows
    ``i .. i+L-1`` and ``targets`` rows ``i+1 .. i+L``, for ``i = 0, bptt, 2*bptt, ...``.
    Chunk ``k+1`` continues chunk ``k`` in every column, so the state can be carried over.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}")
    for i in range(0, len(stream) - 1, bptt):
        length = min(bptt, len(stream) - 1 - i)
        yield stream[i : i + length], stream[i + 1 : i + 1 + length]


# ------------------------------------------------------------------- classification


class LabelledSequences(NamedTuple):
    """Padded sequences ``x`` ``(N, T, F)`` float64 (zeros past each length), their
    ``lengths`` ``(N,)`` int64 and integer class labels ``y`` ``(N,)`` int64 (None for
    an unlabelled ``.npz`` loaded with ``require_labels=False``)."""

    x: np.ndarray
    y: np.ndarray
    lengths: np.ndarray


def _integer_labels(y, path) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{path}: labels y must be 1-D (N,), got shape {y.shape}")
    if y.dtype.kind not in "iuf" or (y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"{path}: labels y must be integers, got dtype {y.dtype}"
                         + (" with non-integer values" if y.dtype.kind == "f" else ""))
    if y.size and y.min() < 0:
        raise ValueError(f"{path}: labels y must be >= 0, got {y.min()}")
    return y.astype(np.int64)


def _load_npz(path, require_labels: bool) -> LabelledSequences:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:  # object (ragged) arrays need pickle, refused above
        raise ValueError(f"{path}: cannot read arrays ({exc}); ragged sequences must be "
                         "padded to (N, T, F) with a 'lengths' array") from None
    for key in ("x", "y") if require_labels else ("x",):
        if key not in arrays:
            raise ValueError(f"{path}: missing array {key!r}; found {sorted(arrays)}")
    x = arrays["x"]
    if x.ndim != 3 or x.dtype.kind not in "iuf":
        raise ValueError(f"{path}: x must be a numeric (N, T, F) array, got shape "
                         f"{x.shape} dtype {x.dtype}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{path}: x contains NaN or infinite values")
    n, t, _ = x.shape
    y = _integer_labels(arrays["y"], path) if "y" in arrays else None
    if y is not None and len(y) != n:
        raise ValueError(f"{path}: y has {len(y)} labels but x has {n} sequences")
    if "lengths" in arrays:
        lengths = arrays["lengths"]
        if lengths.shape != (n,) or lengths.dtype.kind not in "iu":
            raise ValueError(f"{path}: lengths must be an integer (N,) = ({n},) array, got "
                             f"shape {lengths.shape} dtype {lengths.dtype}")
        if n and (lengths.min() < 1 or lengths.max() > t):
            raise ValueError(f"{path}: lengths must be in [1, {t}], got "
                             f"[{lengths.min()}, {lengths.max()}]")
        lengths = lengths.astype(np.int64)
        x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    else:
        lengths = np.full(n, t, dtype=np.int64)
    return LabelledSequences(x, y, lengths)


def _load_long_csv(path) -> LabelledSequences:
    header, rows = _read_table(path)
    id_col = _column_index(header, "sequence_id", path)
    label_col = _column_index(header, "label", path)
    features = [i for i in range(len(header)) if i not in (id_col, label_col)]
    if not features:
        raise ValueError(f"{path}: no feature columns besides 'sequence_id' and 'label'")
    steps: dict[str, list[list[float]]] = {}
    labels: dict[str, tuple[int, int]] = {}  # id -> (label, line it was first seen)
    for line, cells in rows:
        sid = cells[id_col].strip()
        text = cells[label_col].strip()
        try:
            label = float(text)
        except ValueError:
            label = math.nan
        if not label.is_integer() or label < 0:
            raise ValueError(f"{path}: label {text!r} at line {line} is not an integer >= 0")
        label = int(label)
        first = labels.setdefault(sid, (label, line))
        if first[0] != label:
            raise ValueError(f"{path}: sequence {sid!r} has label {first[0]} at line "
                             f"{first[1]} but {label} at line {line}")
        steps.setdefault(sid, []).append(
            [_parse_float(cells[i], path, header[i], line) for i in features])
    lengths = np.array([len(s) for s in steps.values()], dtype=np.int64)
    x = np.zeros((len(steps), lengths.max(), len(features)), dtype=np.float64)
    for k, seq in enumerate(steps.values()):
        x[k, : len(seq)] = seq
    y = np.array([labels[sid][0] for sid in steps], dtype=np.int64)
    return LabelledSequences(x, y, lengths)


def load_labelled(path, require_labels: bool = True) -> LabelledSequences:
    """Load labelled sequences for classification.

    - ``.npz``: arrays ``x`` ``(N, T, F)``, ``y`` ``(N,)`` integer labels (optional with
      ``require_labels=False``, e.g. for prediction), optional ``lengths`` ``(N,)``
      (values past each length are zeroed).
    - ``.csv``, long format: columns ``sequence_id``, ``label`` and any feature columns, one
      row per time step, rows of each sequence in time order. Sequences may differ in
      length (padded with zeros); they keep the order of their first row.

    Raises ValueError, naming the file, for NaN or non-numeric features, non-integer or
    negative labels, a label changing within a sequence, or inconsistent shapes.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in (".npz", ".csv"):
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use .npz or .csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    return _load_npz(path, require_labels) if suffix == ".npz" else _load_long_csv(path)


# ------------------------------------------------------------------------- batching


def iterate_minibatches(n: int, batch_size: int, rng: np.random.Generator | None,
                        shuffle: bool = True) -> Iterator[np.ndarray]:
    """Yield index arrays covering ``range(n)`` in batches of ``batch_size`` (the last
    may be smaller). With ``shuffle`` the order is ``rng.permutation(n)``, so one seed
    fixes it; ``rng`` may be None only without ``shuffle``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle and rng is None:
        raise ValueError("shuffle=True needs rng, a numpy.random.Generator")
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]
