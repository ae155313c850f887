"""The PNGs of ``lstm-numba plot``: a checkpoint's loss per epoch and its task's picture.

- ``loss.png``: training and validation loss per epoch from the checkpoint's history, the
  best epoch marked;
- ``forecast.png``: the validation series one step ahead, truth against the model and the
  naive forecasts, beside each horizon step's RMSE for the model and the naive forecasts;
- ``confusion.png``: the classifier's confusion matrix on its validation split;
- ``charlm.png``: per-character loss (bits) along the first 600 validation characters,
  beside the mean loss of each of the 25 most frequent characters over the validation text.

The task's data is rebuilt as training built it (same file, split and normaliser), so
the pictures show the validation part the metrics were computed on. Drawn with
matplotlib's Agg canvas (no pyplot, no display). Needs the extra ``plot``.
"""

from __future__ import annotations

import os

import numpy as np

from lstm_numba.interop.common import InteropError, require

DEFAULT_SIZE = (900, 500)
DPI = 100


def _figure(size, ncols=1):
    require("matplotlib", "plot", "Plotting")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, ncols)


def _save(fig, directory, name) -> str:
    path = os.path.join(directory, name)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def plot_loss(history: list, size, directory) -> str:
    if not history:
        raise InteropError("the checkpoint has no history (no epoch finished)")
    fig, ax = _figure(size)
    epochs = [r["epoch"] for r in history]
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        values = [np.nan if r.get(key) is None else r[key] for r in history]
        ax.plot(epochs, values, marker="o", markersize=3, label=f"{label} loss")
    best = [r for r in history if r.get("best")]
    if best:
        ax.axvline(best[-1]["epoch"], color="grey", linestyle=":", label=f"best epoch {best[-1]['epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, directory, "loss.png")


def _rmse(pred, truth):
    return np.sqrt(np.mean((pred - truth) ** 2, axis=0))


def plot_forecast(trained, task, size, directory) -> str:
    d = task.data
    pred = task.to_original(task._predict_last(trained.model, task.x_val).astype(np.float64), d.x_val)
    truth = d.y_val_orig
    naive = {"naive last value": d.naive_last}
    if d.naive_seasonal is not None:
        naive[f"seasonal naive (period {task.season})"] = d.naive_seasonal
    fig, (left, right) = _figure(size, 2)
    steps = np.arange(len(truth))
    left.plot(steps, truth[:, 0], color="black", linewidth=2, label="truth")
    left.plot(steps, pred[:, 0], label=f"model ({trained.model.rnn.gate_name})")
    for label, values in naive.items():
        left.plot(steps, values[:, 0], linestyle="--", label=label)
    left.set_title(f"validation, 1 step ahead: {task.target}")
    left.set_xlabel("validation window")
    left.set_ylabel(task.target)
    left.legend(fontsize="small")
    horizon = np.arange(1, truth.shape[1] + 1)
    right.plot(horizon, _rmse(pred, truth), marker="o", label="model")
    for label, values in naive.items():
        right.plot(horizon, _rmse(values, truth), marker="s", linestyle="--", label=label)
    right.set_title("RMSE by steps ahead (original units)")
    right.set_xlabel("steps ahead")
    right.set_ylabel("RMSE")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return _save(fig, directory, "forecast.png")


def plot_confusion(trained, task, size, directory) -> str:
    predicted = trained.model.predict(task.x_val, task.len_val).argmax(1)
    k = task.num_classes
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (task.y_val, predicted), 1)
    fig, ax = _figure(size)
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="sequences")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"confusion matrix, {len(task.y_val)} validation sequences, "
                 f"accuracy {np.mean(predicted == task.y_val):.1%}")
    return _save(fig, directory, "confusion.png")


def _char_label(c: str) -> str:
    return {" ": "space", "\n": "\\n", "\t": "\\t"}.get(c, c)


def plot_charlm(trained, task, size, directory, top=25) -> str:
    from lstm_numba.training.data import text

    model, state = trained.model, None
    bits, targets = [], []
    for inputs, chunk_targets in text.iterate_bptt(task.val_stream, task.cfg.window):
        logits, state = model.forward(inputs.T, state, need_grad=False)
        z = logits.astype(np.float64)
        z -= z.max(axis=-1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        t = chunk_targets.T  # (B, L)
        bits.append(-np.take_along_axis(log_p, t[..., None], axis=-1)[..., 0] / np.log(2.0))
        targets.append(t)
    bits, targets = np.concatenate(bits, axis=1), np.concatenate(targets, axis=1)  # (B, steps)
    fig, (left, right) = _figure(size, 2)
    along = bits.reshape(-1)[:600]  # the streams are consecutive pieces of the validation text
    left.plot(along, linewidth=0.6, alpha=0.5, label="each character")
    window = max(1, min(20, len(along) // 10))
    left.plot(np.convolve(along, np.ones(window) / window, mode="valid"), linewidth=2,
              label=f"mean of {window}")
    left.axhline(bits.mean(), color="grey", linestyle=":", label=f"validation mean {bits.mean():.2f}")
    left.set_title(f"loss along the first {along.size} validation characters")
    left.set_xlabel("character")
    left.set_ylabel("bits")
    left.legend(fontsize="small")
    ids, counts = np.unique(targets, return_counts=True)
    frequent = ids[np.argsort(-counts)][:top]
    means = [bits[targets == i].mean() for i in frequent]
    chars = task.vocab.chars
    right.bar(range(len(frequent)), means)
    right.set_xticks(range(len(frequent)), [_char_label(chars[i]) for i in frequent], fontsize="small",
                     rotation=90)
    right.set_title(f"mean loss of the {len(frequent)} most frequent characters")
    right.set_ylabel("bits per character")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return _save(fig, directory, "charlm.png")


def _task(trained, data):
    """The training task rebuilt from the checkpoint (its data file, or ``data``)."""
    import dataclasses

    from lstm_numba.training.config import TrainConfig
    from lstm_numba.training.tasks.registry import make_task

    cfg = TrainConfig.from_dict(trained.meta["train"])
    if data is not None:
        cfg = dataclasses.replace(cfg, data=os.fspath(data))
    elif cfg.data is not None and not os.path.isfile(cfg.data):
        raise InteropError(f"the training data {cfg.data} is gone; give the same file with --data")
    return make_task(cfg.resolved())


def plot_checkpoint(path, directory, *, data=None, size=DEFAULT_SIZE) -> list:
    """Write ``loss.png`` and the task's picture for the checkpoint ``path`` into ``directory``;
    returns the paths written."""
    from lstm_numba.training.trainer import load_trained

    require("matplotlib", "plot", "Plotting")
    width, height = (int(v) for v in size)
    if not (100 <= width <= 8000 and 100 <= height <= 8000):
        raise InteropError(f"size {width}x{height}: expected 100..8000 pixels each way")
    trained = load_trained(path)
    os.makedirs(directory, exist_ok=True)
    written = [plot_loss(trained.meta.get("history", []), (width, height), directory)]
    task = _task(trained, data)
    draw = {"forecast": plot_forecast, "classify": plot_confusion, "charlm": plot_charlm}[trained.task]
    written.append(draw(trained, task, (width, height), directory))
    return written
