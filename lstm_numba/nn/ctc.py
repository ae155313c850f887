"""CTC loss (``ctc_loss``) on the compiled forward-backward in ``engine.kernels.ctc``.

Semantics follow ``torch.nn.functional.ctc_loss`` applied to ``log_softmax(logits)``:

* ``reduction="none"``: the per-row losses, shape (B,); the gradient is that of their sum.
* ``reduction="sum"``: their sum.
* ``reduction="mean"``: each row's loss divided by its target length (at least 1), then
  the mean over the batch.
* ``zero_infinity=True``: a row whose target cannot be aligned within its input length
  (an infinite loss) counts 0 and gets a zero gradient; otherwise its loss is ``inf`` and
  its gradient NaN, as in torch.

The gradient is with respect to the unnormalised ``logits``; padded steps (t >= the row's
input length) get zero.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ctc_loss"]

REDUCTIONS = ("none", "sum", "mean")


def _targets_as_flat(targets, target_lengths, batch):
    """Concatenated labels, each row's start and length, from a (B, S) padded array with
    ``target_lengths``, or from a list of label sequences."""
    if isinstance(targets, (list, tuple)):
        rows = [np.asarray(row, dtype=np.int64).reshape(-1) for row in targets]
        lengths = np.array([row.size for row in rows], dtype=np.int64)
        flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    else:
        padded = np.asarray(targets)
        if padded.ndim != 2 or not np.issubdtype(padded.dtype, np.integer):
            raise ValueError(f"targets must be a (B, S) integer array or a list of label "
                             f"sequences, got {padded.dtype} of shape {padded.shape}")
        if target_lengths is None:
            raise ValueError("target_lengths is required when targets is a padded array")
        lengths = np.asarray(target_lengths, dtype=np.int64).reshape(-1)
        if lengths.size != padded.shape[0] or (lengths < 0).any() or (lengths > padded.shape[1]).any():
            raise ValueError(f"target_lengths must hold {padded.shape[0]} values in "
                             f"[0, {padded.shape[1]}], got {lengths.tolist()}")
        flat = np.concatenate([padded[b, :lengths[b]] for b in range(lengths.size)]).astype(np.int64)
    if lengths.size != batch:
        raise ValueError(f"targets hold {lengths.size} rows, logits have a batch of {batch}")
    starts = np.zeros(batch, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return flat, starts, lengths


def ctc_loss(logits, targets, input_lengths=None, target_lengths=None, *, blank: int = 0,
             reduction: str = "mean", zero_infinity: bool = False):
    """CTC loss of time-major ``logits`` (T, B, C) and its gradient ``dlogits`` (T, B, C).

    ``targets``: a list of B label sequences, or a (B, S) array padded past
    ``target_lengths``; labels lie in [0, C) and are never ``blank``. ``input_lengths``
    (B,) defaults to T for every row. Returns ``(loss, dlogits)``: ``loss`` a float, or a
    (B,) float64 array for ``reduction="none"``.
    """
    from lstm_numba.engine.kernels.ctc import ctc_loss_grad

    logits = np.ascontiguousarray(logits)
    if logits.dtype not in (np.float32, np.float64) or logits.ndim != 3:
        raise ValueError(f"logits must be a float32 or float64 array of shape (T, B, C), "
                         f"got {logits.dtype} of shape {logits.shape}")
    steps, batch, n_classes = logits.shape
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0 <= blank < n_classes:
        raise ValueError(f"blank must lie in [0, {n_classes}), got {blank}")
    if not np.isfinite(logits).all():
        raise ValueError("logits hold NaN or infinite values")
    flat, starts, lengths = _targets_as_flat(targets, target_lengths, batch)
    if flat.size and (flat.min() < 0 or flat.max() >= n_classes or (flat == blank).any()):
        raise ValueError(f"target labels must lie in [0, {n_classes}) and differ from the "
                         f"blank {blank}")
    if input_lengths is None:
        input_lengths = np.full(batch, steps, dtype=np.int64)
    input_lengths = np.asarray(input_lengths, dtype=np.int64).reshape(-1)
    if input_lengths.size != batch or (input_lengths < 1).any() or (input_lengths > steps).any():
        raise ValueError(f"input_lengths must hold {batch} values in [1, {steps}], "
                         f"got {input_lengths.tolist()}")
    if reduction == "mean":
        scale = 1.0 / (np.maximum(lengths, 1).astype(np.float64) * batch)
    else:
        scale = np.ones(batch)
    losses = np.empty(batch)
    dlogits = np.empty_like(logits)
    ctc_loss_grad(logits, flat, starts, lengths, input_lengths, blank, scale,
                  bool(zero_infinity), losses, dlogits)
    if reduction == "none":
        return losses, dlogits
    return float((losses * scale).sum() if reduction == "mean" else losses.sum()), dlogits
