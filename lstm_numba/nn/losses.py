"""Loss functions returning ``(loss, gradient)``, matching ``torch.nn.functional``.

Each loss uses torch's default ``reduction="mean"`` and returns the loss as a Python float
together with its gradient with respect to the prediction, in the prediction's dtype.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mse_loss", "softmax_cross_entropy", "softmax"]


def _float_array(label: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"{label} must be float32 or float64, got {x.dtype}")
    return x


def mse_loss(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements, and its gradient ``2 (pred - target) / n``."""
    pred = _float_array("pred", pred)
    target = np.asarray(target, dtype=pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} != target shape {target.shape}")
    if pred.size == 0:
        raise ValueError("mse_loss of an empty array is undefined")
    diff = pred - target
    return float(np.mean(diff * diff)), diff * (2.0 / pred.size)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """Stable log-softmax over the last axis (max subtracted before exp)."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Stable softmax of ``logits / temperature`` over the last axis."""
    logits = _float_array("logits", logits)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    z = logits / np.asarray(temperature, dtype=logits.dtype)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray,
                          ignore_index: int | None = None) -> tuple[float, np.ndarray]:
    """Fused softmax + negative log-likelihood, like ``F.cross_entropy`` (mean reduction).

    ``logits`` is (N, C), ``labels`` (N,) integers in ``[0, C)``; rows whose label equals
    ``ignore_index`` add nothing to the loss and get a zero gradient. The mean runs over the
    rows kept; when none is kept the loss is NaN and the gradient zero, as in torch.
    Returns ``(loss, dlogits)``, ``dlogits = (softmax - onehot) / n_kept`` on kept rows.
    """
    logits = _float_array("logits", logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {logits.shape}")
    n, c = logits.shape
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be an integer array of shape ({n},), "
            f"got {labels.dtype} {labels.shape}")
    keep = np.ones(n, dtype=bool) if ignore_index is None else labels != ignore_index
    bad = keep & ((labels < 0) | (labels >= c))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"label {int(labels[i])} at row {i} is outside [0, {c})"
            + ("" if ignore_index is None else f" and is not ignore_index {ignore_index}"))
    rows = np.flatnonzero(keep)
    kept = labels[rows]
    log_p = _log_softmax(logits[rows])
    dlogits = np.zeros_like(logits)
    if rows.size == 0:
        return float("nan"), dlogits
    loss = -float(np.mean(log_p[np.arange(rows.size), kept]))
    grad = np.exp(log_p)
    grad[np.arange(rows.size), kept] -= 1
    dlogits[rows] = grad / rows.size
    return loss, dlogits
