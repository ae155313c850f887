"""Hyper-parameter sweeps: every combination of a grid trained independently, one
checkpoint each, ranked by the validation metric.

    grid = parse_grid("hidden_size=64,128 lr=1e-3,3e-3")
    rows = run_sweep(TrainConfig(epochs=20), grid, "runs/sweep", client=client)
    print("\\n".join(format_table(rows)))

Each combination is one :func:`train_combination` call: a Dask task on a cluster (as
many at once as the cluster has threads; a task whose worker dies is run again
elsewhere), or one after the other in this process without a client. A data file travels
with the tasks (workers need not share a filesystem); the checkpoint comes back and is
written under ``out_dir`` as ``<name>=<value>_....npz``, its data path that of this
machine. A combination that fails (a bad value, a diverging run, a lost plugin) is a
``failed`` row with its error; the others finish. Rows are sorted by the task's
validation metric (:data:`METRICS`) after the final weights (the best epoch's with
``restore_best``), then by validation loss; failed rows come last.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import tempfile
import time
from dataclasses import dataclass

from lstm_numba.training.config import TrainConfig

#: The validation metric each task's sweep is ranked by, and whether higher is better.
METRICS = {"forecast": ("val_rmse", False), "classify": ("val_accuracy", True), "charlm": ("val_bpc", False)}

#: Settings a grid may not vary (they define the data, or are not per-run).
_FIXED = ("task", "data", "columns", "target")


def _coerce(name: str, kind: str, text: str):
    text = text.strip()
    if "None" in kind and text.lower() == "none":
        return None
    try:
        if kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind.startswith("int"):
            return int(text)
        if kind.startswith("float"):
            return float(text)
    except ValueError:
        raise ValueError(f"--grid: {name}={text!r} is not {kind.split(' ')[0]}") from None
    return text


def parse_grid(text: str) -> dict:
    """``"hidden_size=64,128 lr=1e-3,3e-3"`` -> ``{"hidden_size": [64, 128], "lr": [0.001,
    0.003]}``: space-separated ``NAME=V1,V2,...`` with NAME a :class:`TrainConfig` field
    (dashes allowed), each value converted to the field's type (``none`` for None)."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}
    grid = {}
    for token in text.split():
        name, sep, values = token.partition("=")
        name = name.replace("-", "_")
        if not sep or not values or any(not v.strip() for v in values.split(",")):
            raise ValueError(f"--grid: {token!r} is not NAME=VALUE1,VALUE2,...")
        if name not in fields or name in _FIXED or fields[name].startswith("list"):
            raise ValueError(f"--grid: {name!r} is not a setting a sweep can vary")
        if name in grid:
            raise ValueError(f"--grid: {name!r} is given twice")
        grid[name] = [_coerce(name, fields[name], v) for v in values.split(",")]
    if not grid:
        raise ValueError("--grid is empty; give NAME=VALUE1,VALUE2,...")
    return grid


def combinations(grid: dict) -> list[dict]:
    """Every combination of the grid's values, the last setting varying fastest."""
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def combination_name(combo: dict) -> str:
    """``hidden_size=64_lr=0.001``: the combination's checkpoint stem."""
    return "_".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in combo.items())


@dataclass
class DataFile:
    """A data file's bytes, sent with the tasks so workers need no shared filesystem."""

    path: str
    content: bytes


def _rebase(checkpoint: str, path: str) -> None:
    """Point a checkpoint trained on a worker's copy of the data at this machine's file."""
    from lstm_numba.training import checkpoint as ckpt

    c = ckpt.load_checkpoint(checkpoint)
    meta = dict(c.meta)
    meta["train"] = {**meta["train"], "data": path}
    if meta.get("data", {}).get("path"):
        meta["data"] = {**meta["data"], "path": path}
    ckpt.save_checkpoint(checkpoint, c.params, meta, c.optim_state, c.extra)


def _worker_threads() -> None:
    """Inside a Dask task: Numba runs as many threads as the worker has."""
    try:
        from distributed import get_worker

        threads = get_worker().state.nthreads
    except (ImportError, ValueError):
        return
    from lstm_numba.training.distributed import _set_threads

    _set_threads(threads)


def train_combination(config: dict, data: DataFile | None = None, checkpoint: str | None = None) -> dict:
    """Train one configuration (a ``TrainConfig.to_dict()``) to the end; return its final
    validation metrics, progress and, unless ``checkpoint`` names where to write it, the
    checkpoint's bytes; or ``{"error": one line}`` when it fails (a value, not an exception,
    so the cluster does not log a failed task). ``data`` replaces the data file by a local
    copy of its bytes."""
    try:
        return _train_combination(config, data, checkpoint)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        return {"error": _one_line(exc)}


def _train_combination(config, data, checkpoint) -> dict:
    from lstm_numba.training.trainer import Trainer

    _worker_threads()
    cfg = TrainConfig.from_dict(config)
    with tempfile.TemporaryDirectory(prefix="lstm-numba-sweep-") as tmp:
        if data is not None:
            local = os.path.join(tmp, os.path.basename(data.path))
            with open(local, "wb") as f:
                f.write(data.content)
            cfg = dataclasses.replace(cfg, data=local)
        path = checkpoint or os.path.join(tmp, "run.npz")
        t0 = time.perf_counter()
        trainer = Trainer(cfg)
        st = trainer.fit(checkpoint=path)
        seconds = time.perf_counter() - t0
        result = {"metrics": trainer.task.evaluate(trainer.model), "best_val": st.best_val,
                  "best_epoch": st.best_epoch, "epochs": st.epoch, "steps": st.step, "seconds": seconds}
        if checkpoint is None:
            if data is not None:
                _rebase(path, data.path)
            with open(path, "rb") as f:
                result["checkpoint_bytes"] = f.read()
    return result


def _write_bytes(path: str, content: bytes) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def run_sweep(base: TrainConfig, grid: dict, out_dir: str, client=None, on_result=None) -> list[dict]:
    """Train every combination of ``grid`` over ``base``; return the rows, sorted
    (:func:`sort_rows`). ``on_result(row)`` is called as each combination ends."""
    task = base.resolved().task
    metric, _ = METRICS[task]
    data = None
    if client is not None and base.data is not None:
        with open(base.data, "rb") as f:
            data = DataFile(os.path.abspath(base.data), f.read())
    rows, submitted = [], {}
    for index, combo in enumerate(combinations(grid)):
        name = combination_name(combo)
        row = {"name": name, "settings": combo, "status": "ok", "metric": metric, "value": None,
               "val_loss": None, "best_epoch": None, "epochs": None, "steps": None, "seconds": None,
               "checkpoint": os.path.join(out_dir, f"{name}.npz"), "error": None, "index": index}
        rows.append(row)
        try:
            cfg = dataclasses.replace(base, **combo)
            cfg.resolved()  # a bad value fails here, without a task
        except Exception as exc:  # noqa: BLE001 - reported in the table
            _failed(row, exc, on_result)
            continue
        if client is None:
            _done(row, train_combination(cfg.to_dict(), checkpoint=row["checkpoint"]), on_result)
        else:
            submitted[client.submit(train_combination, cfg.to_dict(), data, pure=False,
                                    key=f"lstm-numba-sweep-{index}-{name}")] = row
    if submitted:
        from distributed import as_completed

        for future in as_completed(list(submitted)):
            row = submitted[future]
            try:
                result = future.result()
                if "checkpoint_bytes" in result:
                    _write_bytes(row["checkpoint"], result.pop("checkpoint_bytes"))
            except Exception as exc:  # noqa: BLE001 - the cluster lost the task
                result = {"error": _one_line(exc)}
            _done(row, result, on_result)
    return sort_rows(rows, task)


def _done(row, result, on_result):
    if "error" in result:
        row.update(status="failed", error=result["error"], checkpoint=None)
        if on_result:
            on_result(row)
        return
    metrics = result["metrics"]
    row.update(value=metrics.get(row["metric"]), val_loss=metrics.get("val_loss"),
               best_epoch=result["best_epoch"], epochs=result["epochs"], steps=result["steps"],
               seconds=result["seconds"])
    if on_result:
        on_result(row)


def _failed(row, exc, on_result):
    _done(row, {"error": _one_line(exc)}, on_result)


def sort_rows(rows: list[dict], task: str) -> list[dict]:
    """Finished rows best first by the task's metric (then validation loss, then grid
    order); failed rows after them, in grid order."""
    _, higher = METRICS[task]

    def key(row):
        if row["status"] != "ok":
            return (1, 0.0, 0.0, row["index"])
        value = row["value"] if row["value"] is not None and math.isfinite(row["value"]) else math.inf
        loss = row["val_loss"] if row["val_loss"] is not None and math.isfinite(row["val_loss"]) else math.inf
        return (0, -value if higher and value != math.inf else value, loss, row["index"])

    return sorted(rows, key=key)


def format_table(rows: list[dict]) -> list[str]:
    """The rows as an aligned text table, one line each."""
    if not rows:
        return ["no combinations"]
    keys = list(rows[0]["settings"])
    metric = rows[0]["metric"]
    head = ["#", *keys, metric, "val_loss", "epochs", "seconds", "checkpoint / error"]
    table = [head]
    for rank, row in enumerate(rows, 1):
        ok = row["status"] == "ok"
        table.append([str(rank), *(str(row["settings"][k]) for k in keys),
                      f"{row['value']:.5g}" if ok and row["value"] is not None else "-",
                      f"{row['val_loss']:.5g}" if ok and row["val_loss"] is not None else "-",
                      str(row["epochs"]) if ok else "-",
                      f"{row['seconds']:.1f}" if ok and row["seconds"] is not None else "-",
                      row["checkpoint"] if ok else f"FAILED: {row['error']}"])
    widths = [max(len(r[i]) for r in table) for i in range(len(head) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in table]
