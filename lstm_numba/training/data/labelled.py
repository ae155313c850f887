"""Labelled sequences for classification (``.npz`` or long-format CSV), and shuffled
mini-batches.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import Iterator, NamedTuple

import numpy as np

from lstm_numba.training.data.tables import column_index, parse_float, read_table


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
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # np.load would try to unpickle anything else
            raise ValueError(f"{path}: not an .npz archive (no zip header); save the arrays with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:  # object (ragged) arrays need pickle, refused above
        if "pickle" not in str(exc).lower() and "object arrays" not in str(exc).lower():
            raise ValueError(f"{path}: not a readable .npz archive ({' '.join(str(exc).split())[:200]})") from None
        raise ValueError(f"{path}: cannot read arrays ({exc}); ragged sequences must be "
                         "padded to (N, T, F) with a 'lengths' array") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError,
            MemoryError) as exc:  # truncated, damaged or not a zip at all
        raise ValueError(f"{path}: not a readable .npz archive ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]})") from None
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
    header, rows = read_table(path)
    id_col = column_index(header, "sequence_id", path)
    label_col = column_index(header, "label", path)
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
            [parse_float(cells[i], path, header[i], line) for i in features])
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
