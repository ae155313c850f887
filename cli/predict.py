"""``lstm-numba predict``: forecasts or class probabilities from a training checkpoint, as CSV.

Only Click is imported at module level; lstm_numba is imported when the command runs.
"""

from __future__ import annotations

import csv
import os
import re

import click
from lstm_numba_cli.common import Command, friendly_errors, open_output


@click.command("predict", cls=Command)
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Forecast: a CSV with the training columns; the forecast starts after its last row. "
                   "Classify: a labelled .npz/CSV (an .npz may leave out y). Default: the data the "
                   "checkpoint was trained on (the embedded series when it used that).")
@click.option("--out", type=click.Path(dir_okay=False), default="-", show_default=True,
              help="CSV file to write; - writes to standard output.")
@friendly_errors
def predict(checkpoint, data, out):
    """Forecast the next horizon, or classify sequences, with a trained CHECKPOINT.

    \b
    Forecast: one row per step ahead, in the original units of the target
    (with dates when the data has a YYYY-MM or YYYY-MM-DD `date` column).
    Classify: one row per sequence with the predicted class and each class's probability.
    """
    from lstm_numba.training.trainer import load_trained

    trained = load_trained(checkpoint)
    if trained.task == "forecast":
        header, rows = _forecast(trained, data)
    elif trained.task == "classify":
        header, rows = _classify(trained, data)
    else:
        raise click.ClickException(f"{checkpoint} is a character language model; sample it with "
                                   "`lstm-numba generate`")
    stream = open_output(out)
    try:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    finally:
        if out != "-":
            stream.close()
    if out != "-":
        click.echo(f"wrote {len(rows)} rows to {out}", err=True)


def _data_path(trained, data, kind):
    if data is not None:
        return data
    stored = trained.data.get("path")
    if stored is not None:
        if not os.path.isfile(stored):
            raise click.ClickException(f"the training data {stored} is gone; give --data")
        return stored
    from lstm_numba import datasets

    if kind == "forecast":
        return datasets.series_path(trained.data.get("embedded") or datasets.DEFAULT_SERIES)
    raise click.ClickException("the checkpoint names no data file; give --data")


def _forecast(trained, data):
    from lstm_numba.training.data.tables import read_csv_columns
    from lstm_numba.training.tasks.forecast import ForecastTask

    d = trained.data
    path = _data_path(trained, data, "forecast")
    values = ForecastTask.forecast(trained.model, d, read_csv_columns(path, d["columns"]).values)
    dates = _future_dates(path, len(values))
    header = ["step"] + (["date"] if dates else []) + [d["target"]]
    rows = [[i + 1] + ([dates[i]] if dates else []) + [repr(float(v))] for i, v in enumerate(values)]
    return header, rows


def _future_dates(path, n):
    """The ``n`` dates after the last row when the CSV has a monthly ``YYYY-MM`` or a regular
    ``YYYY-MM-DD`` ``date`` column; otherwise None."""
    import numpy as np

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if "date" not in header:
            return None
        i = header.index("date")
        last = [row[i].strip() for row in reader if len(row) > i and row[i].strip()][-2:]
    if len(last) < 2:
        return None
    try:
        if all(re.fullmatch(r"\d{4}-\d{2}", s) for s in last):
            months = np.datetime64(last[1], "M")
            return [str(months + k) for k in range(1, n + 1)]
        if all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", s) for s in last):
            a, b = np.datetime64(last[0], "D"), np.datetime64(last[1], "D")
            step = b - a
            if step <= np.timedelta64(0, "D"):
                return None
            return [str(b + k * step) for k in range(1, n + 1)]
    except ValueError:
        return None
    return None


def _classify(trained, data):
    import numpy as np

    from lstm_numba.training.data.labelled import load_labelled
    from lstm_numba.training.tasks.classify import ClassifyTask

    path = _data_path(trained, data, "classify")
    seqs = load_labelled(path, require_labels=False)  # an .npz may lack y
    labels = seqs.y
    proba = ClassifyTask.predict_proba(trained.model, trained.data, seqs.x, seqs.lengths, source=path)
    classes = range(proba.shape[1])
    header = ["sequence"] + (["label"] if labels is not None else []) + ["predicted"] + [f"p_{c}" for c in classes]
    rows = [[i] + ([int(labels[i])] if labels is not None else []) + [int(p.argmax())]
            + [f"{float(v):.6g}" for v in p] for i, p in enumerate(proba)]
    if labels is not None:
        acc = float(np.mean(proba.argmax(1) == labels))
        click.echo(f"accuracy {acc:.4f} on {len(labels)} labelled sequences", err=True)
    return header, rows
