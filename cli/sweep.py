"""``lstm-numba sweep``: train every combination of a hyper-parameter grid, on a Dask
cluster or in this process, and print them ranked by the validation metric.

It takes every ``train`` option (the base of each combination) except those about one
run's file (``--out``, ``--force``, ``--resume``, ``--metrics``). Only Click is imported at
module level; the work is in :mod:`lstm_numba.training.sweep`.
"""

from __future__ import annotations

import copy
import json
import math
import os

import click
from lstm_numba_cli.common import Command, friendly_errors
from lstm_numba_cli.train import build_config, data_source
from lstm_numba_cli.train import train as _train

#: train options that are about one run's checkpoint or progress, not its settings.
_NOT_SHARED = {"out", "force", "resume", "metrics", "quiet"}


@click.command("sweep", cls=Command)
@click.option("--grid", required=True,
              help="The settings to vary: space-separated NAME=V1,V2,... with NAME a train option "
                   "(hidden_size, lr, layers, dropout, gate, ...), e.g. 'hidden_size=64,128 lr=1e-3,3e-3'.")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Where each combination's checkpoint goes (NAME=VALUE_....npz). "
                   "Default: runs/sweep-<data file name>.")
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print the ranked results as JSON instead of a table.")
@friendly_errors
def sweep(grid, out_dir, as_json, data_arg, data, task, columns, clip_grad, patience, embedding_dim,
          scheduler, workers, **options):
    """Train every combination of a grid of train settings and rank them.

    Each combination is an independent training (on a Dask cluster with --scheduler or
    --workers, else one after the other here), with its own checkpoint. The table at the
    end is sorted by the validation metric (forecast: RMSE, classify: accuracy, charlm:
    bits per character); a combination that fails is listed with its error.

    \b
    Examples:
      lstm-numba sweep --grid 'hidden_size=64,128 lr=1e-3,3e-3' --workers 2
      lstm-numba sweep book.txt --grid 'layers=1,2' --scheduler tcp://host:8786 --epochs 5
    """
    data = data_source(data_arg, data)
    if scheduler is not None and workers is not None:
        raise click.UsageError("give either --scheduler or --workers, not both")

    from lstm_numba.training import sweep as S
    from lstm_numba.training.config import default_checkpoint, infer_task
    from lstm_numba.training.distributed import cluster_client

    values = S.parse_grid(grid)
    base = build_config(data, task, columns, clip_grad, patience, embedding_dim, options)
    base.resolved()  # a bad base setting fails before any cluster starts
    if out_dir is None:
        stem = os.path.splitext(os.path.basename(default_checkpoint(task or infer_task(data), data)))[0]
        out_dir = os.path.join("runs", f"sweep-{stem}")
    n = len(S.combinations(values))
    say = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    where = (f"the Dask cluster at {scheduler}" if scheduler else
             f"a local Dask cluster of {workers} workers" if workers else "this process")
    say(f"sweep: {n} combinations of {', '.join(values)} on {where} -> {out_dir}/")

    def progress(row):
        if row["status"] == "ok":
            say(f"  done {row['name']}: {row['metric']} {row['value']:.5g} ({row['seconds']:.1f} s)")
        else:
            say(f"  FAILED {row['name']}: {row['error']}")

    with cluster_client(scheduler, workers) as client:
        rows = S.run_sweep(base, values, out_dir, client=client, on_result=progress)
    if as_json:
        click.echo(json.dumps([{k: _finite(v) for k, v in row.items() if k != "index"} for row in rows],
                              indent=2))
    else:
        for line in S.format_table(rows):
            click.echo(line)
    failed = sum(row["status"] != "ok" for row in rows)
    if failed:
        say(f"{failed} of {n} combinations failed")


def _finite(value):
    """JSON has no NaN or Infinity: None instead."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


sweep.params.extend(copy.copy(p) for p in _train.params if p.name not in _NOT_SHARED)
