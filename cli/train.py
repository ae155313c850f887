"""``lstm-numba train``: train a forecaster, a sequence classifier or a character LM.

Only Click is imported at module level (``--help`` must not import numba); the work is in
:mod:`lstm_numba.training.trainer`, imported when the command runs.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import click
from lstm_numba_cli.common import (
    Command,
    explicit_params,
    friendly_errors,
    is_tty,
    one_line,
    split_names,
)

from lstm_numba.training.config import DTYPES, SCHEDULES, TASK_DEFAULTS, TrainConfig
from lstm_numba.training.optim import OPTIMIZERS

#: TrainConfig's own defaults, shown and used by the options.
_DEFAULT = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
_POS = click.IntRange(min=1)
_NONNEG = click.IntRange(min=0)
#: CLI parameters that are not TrainConfig fields.
_CLI_ONLY = {"data_arg", "out", "force", "resume", "metrics", "quiet", "scheduler", "workers"}
#: Settings a resumed run may change.
_RESUME_MAY_CHANGE = {"epochs", "patience"}


def _default_help(key: str, none=None) -> str:
    """The task defaults of ``key`` as help text: ``"24 (forecast), 64 (charlm)"``; a task
    whose default is None is left out, or shown as ``none`` when given."""
    values = {task: none if defaults[key] is None else defaults[key] for task, defaults in TASK_DEFAULTS.items()
              if defaults[key] is not None or none is not None}
    if len(set(values.values())) == 1:
        return f"{next(iter(values.values()))}"
    return ", ".join(f"{value} ({task})" for task, value in values.items())


@click.command("train", cls=Command)
@click.argument("data_arg", metavar="[DATA]", required=False, type=click.Path(dir_okay=False))
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Training data (same as the DATA argument): a numeric CSV to forecast, a labelled "
                   ".npz or CSV (sequence_id, label, features...) to classify, or a .txt file for a "
                   "character LM. Default: the embedded monthly CO2 series (charlm: the embedded "
                   "Alice text).")
@click.option("--task", type=click.Choice(list(TASK_DEFAULTS)), default=None,
              help="What to train. Default: inferred from the data file (.txt -> charlm, .npz or a CSV "
                   "with sequence_id and label -> classify, other CSV -> forecast).")
@click.option("--target", default=None, help="Forecast: the CSV column to predict (needed when there are "
                                             "several numeric columns).")
@click.option("--columns", default=None,
              help="Forecast: comma-separated input columns (default: every numeric column; the target "
                   "is added if missing).")
@click.option("--window", type=_POS, default=None,
              help="Forecast: input steps per window; charlm: truncated-BPTT chunk length. "
                   "Default: " + _default_help("window") + ".")
@click.option("--horizon", type=_POS, default=None,
              help="Forecast: steps ahead predicted at once (one multi-output head). Default: " + _default_help("horizon") + ".")
@click.option("--season", type=_POS, default=None,
              help="Forecast: seasonal period of the seasonal-naive baseline. Default: 12 for the "
                   "embedded CO2 series, none otherwise.")
@click.option("--relative/--absolute", default=None,
              help="Forecast: express each window relative to its last value (default), or feed "
                   "absolute normalised levels.")
@click.option("--seq2seq", is_flag=True, default=False,
              help="Forecast: sequence-to-sequence training (every step predicts its next horizon).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Share of the data held out for validation and early stopping (forecast: the end "
                   "of the series; charlm: the end of the text; classify: random sequences). "
                   "Default: " + _default_help("val_fraction") + ".")
@click.option("--hidden-size", type=_POS, default=None,
              help="Hidden units per layer. Default: " + _default_help("hidden_size") + ".")
@click.option("--layers", type=_POS, default=_DEFAULT["layers"], show_default=True, help="Stacked recurrent layers.")
@click.option("--bidirectional", is_flag=True, default=False,
              help="Bidirectional recurrent layers (forecast, classify).")
@click.option("--gate", default=_DEFAULT["gate"], show_default=True,
              help="Gate plugin: lstm, gru, peephole, coupled, slstm, or an installed third-party gate "
                   "(see `lstm-numba plugins list`).")
@click.option("--num-heads", type=_POS, default=_DEFAULT["num_heads"], show_default=True,
              help="Heads of the recurrent weights (block-diagonal W_hh, xLSTM's sLSTM heads); must divide "
                   "the hidden size. See docs/variants.md.")
@click.option("--activation", default=_DEFAULT["activation"], show_default=True,
              help="Cell/candidate activation plugin (Keras `activation`).")
@click.option("--recurrent-activation", default=_DEFAULT["recurrent_activation"], show_default=True,
              help="Gate activation plugin (Keras `recurrent_activation`).")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=_DEFAULT["dropout"], show_default=True,
              help="Dropout between stacked layers (needs --layers >= 2), as in torch.nn.LSTM.")
@click.option("--zoneout", type=click.FloatRange(0, 1, max_open=True), default=_DEFAULT["zoneout"], show_default=True,
              help="Zoneout on h (Krueger et al. 2016): in training each unit keeps its previous value with this "
                   "probability. Not for mingru/minlstm. See docs/regularisation.md.")
@click.option("--zoneout-cell", type=click.FloatRange(0, 1, max_open=True), default=_DEFAULT["zoneout_cell"],
              show_default=True, help="Zoneout on the cell state c (gates with a c: lstm, peephole, coupled, slstm, "
                                      "layernorm_lstm).")
@click.option("--recurrent-dropout", type=click.FloatRange(0, 1, max_open=True), default=_DEFAULT["recurrent_dropout"],
              show_default=True, help="Keras's recurrent_dropout: in training, h_{t-1} in each gate's recurrent "
                                      "product dropped with one mask per sequence and gate. Gates with W_hh only.")
@click.option("--embedding-dim", type=_NONNEG, default=_DEFAULT["embedding_dim"], show_default=True,
              help="Charlm: character embedding size; 0 feeds one-hot vectors instead.")
@click.option("--dtype", type=click.Choice(list(DTYPES)), default=_DEFAULT["dtype"], show_default=True,
              help="Floating-point precision of weights and computation.")
@click.option("--epochs", type=_POS, default=None,
              help="Maximum passes over the training data. Default: " + _default_help("epochs") + ".")
@click.option("--batch-size", type=_POS, default=None,
              help="Sequences per optimizer step (charlm: parallel streams). Default: " + _default_help("batch_size") + ".")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate. Default: " + _default_help("lr") + ".")
@click.option("--optimizer", type=click.Choice(sorted(OPTIMIZERS)), default=None,
              help="Optimizer (torch.optim semantics). Default: " + _default_help("optimizer") + ".")
@click.option("--momentum", type=click.FloatRange(0), default=_DEFAULT["momentum"], show_default=True,
              help="SGD momentum.")
@click.option("--weight-decay", type=click.FloatRange(0), default=None,
              help="Weight decay (L2 for sgd/adam, decoupled for adamw). Default: 0.01 for adamw, 0 otherwise.")
@click.option("--clip-grad", type=click.FloatRange(0), default=None,
              help="Clip gradients to this global L2 norm; 0 disables. Default: " + _default_help("clip_grad") + ".")
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default=None,
              help="Learning-rate schedule over the epochs. Default: " + _default_help("schedule") + ".")
@click.option("--seed", type=_NONNEG, default=_DEFAULT["seed"], show_default=True,
              help="One seed for the initial weights, shuffling, the classify split and dropout.")
@click.option("--patience", type=_NONNEG, default=None,
              help="Early stopping: stop after this many epochs without a better validation loss; "
                   "0 never stops early. Default: " + _default_help("patience", none=0) + ".")
@click.option("--restore-best/--keep-last", default=_DEFAULT["restore_best"], show_default=True,
              help="At the end, restore the weights of the epoch with the best validation loss.")
@click.option("--shards", type=_POS, default=None,
              help="Data parallelism: cut every global batch into this many shards, sum their "
                   "gradients in shard order and step once. The result depends on the seed and "
                   "the shards only, not on the workers. Default: the number of workers with "
                   "--scheduler or --workers, else unsharded.")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Train on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786); "
                   "see docs/dask.md.")
@click.option("--workers", type=_POS, default=None,
              help="Train on a local Dask cluster of this many single-threaded worker processes, "
                   "started for the run.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint file, written after every epoch. Default: runs/<data file name>.npz "
                   "(runs/co2.npz, runs/alice.npz for the embedded data).")
@click.option("--force", is_flag=True, default=False,
              help="Overwrite --out even when it holds a run of another task or data set.")
@click.option("--resume", is_flag=True, default=False,
              help="Continue the run saved in --out from its last completed epoch (its settings are "
                   "kept; only --epochs and --patience may change).")
@click.option("--metrics", type=click.Path(dir_okay=False), default=None,
              help="Write one record per epoch to this .csv or .jsonl file.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Print only the final summary.")
@friendly_errors
def train(data_arg, data, task, columns, out, force, resume, metrics, quiet, clip_grad, patience, embedding_dim,
          scheduler, workers, **options):
    """Train a model on a CSV, a text file or labelled sequences.

    With no arguments, trains a forecaster on the embedded monthly CO2 series (12 months
    ahead) and compares it with the naive forecasts.

    \b
    Examples:
      lstm-numba train
      lstm-numba train sales.csv --target units --horizon 4
      lstm-numba train book.txt --epochs 5 --hidden-size 256
      lstm-numba train labelled.npz --bidirectional --out runs/clf.npz
      lstm-numba train --out runs/co2.npz --resume
      lstm-numba train --workers 2                 # data-parallel on a local Dask cluster
      lstm-numba train --scheduler tcp://host:8786 # on an existing cluster
    """
    ctx = click.get_current_context()
    data = data_source(data_arg, data)
    if scheduler is not None and workers is not None:
        raise click.UsageError("give either --scheduler or --workers, not both")

    from lstm_numba.training.config import default_checkpoint, infer_task
    from lstm_numba.training.distributed import cluster_client

    cfg = build_config(data, task, columns, clip_grad, patience, embedding_dim, options)
    task_name = task or infer_task(data)
    out = out or default_checkpoint(task_name, data)
    if not resume and not force:
        _refuse_other_run(out, task_name, data)
    with cluster_client(scheduler, workers) as client:
        _run(ctx, cfg, out, resume, metrics, quiet, patience, client)


def data_source(data_arg, data):
    """The data file given as the DATA argument or with --data (not both)."""
    if data_arg is not None and data is not None and data_arg != data:
        raise click.UsageError("give the data either as the DATA argument or with --data, not both")
    return data_arg if data_arg is not None else data


def build_config(data, task, columns, clip_grad, patience, embedding_dim, options):
    """The TrainConfig of the train options (``sweep`` shares them)."""
    from lstm_numba.training.config import TrainConfig

    return TrainConfig(
        task=task, data=data, columns=split_names(columns),
        clip_grad=None if clip_grad == 0 else clip_grad,
        patience=patience, embedding_dim=embedding_dim or None, **options)


def _run(ctx, cfg, out, resume, metrics, quiet, patience, client):
    from lstm_numba.training.metrics import MetricsLog
    from lstm_numba.training.trainer import Trainer

    if resume:
        trainer = _resume(ctx, cfg, out, patience, client)
    else:
        trainer = Trainer(cfg, client=client)
    cfg = trainer.config
    log = None
    if metrics:
        log = MetricsLog(metrics, trainer.state.history)
    echo = (lambda *a, **k: None) if quiet else click.echo
    echo(_header(trainer, out, resumed=resume))
    if trainer.state.finished:
        click.echo(f"the run in {out} already finished at epoch {trainer.state.epoch}; nothing to resume")
    else:
        t0 = time.perf_counter()
        try:
            trainer.fit(checkpoint=out, callbacks=_Progress(quiet), metrics=log)
        except KeyboardInterrupt:
            done = trainer.state.epoch
            click.echo(f"\ninterrupted during epoch {done + 1}; "
                       + (f"{out} holds epoch {done}: continue with `lstm-numba train --out {out} --resume`"
                          if done else "no epoch was completed"), err=True)
            raise SystemExit(130) from None
        trainer.elapsed = time.perf_counter() - t0
    for line in _summary(trainer, out):
        click.echo(line)
    stats = getattr(trainer.shards, "stats", None)
    if stats is not None:
        click.echo(f"cluster: {cfg.shards} shards; {stats.summary()}")


def _refuse_other_run(out, task, data):
    """Refuse to overwrite ``out`` when it holds a run of another task or data set (or is
    not a training checkpoint at all); a rerun of the same task on the same data may."""
    if not os.path.exists(out):
        return
    from lstm_numba.training.checkpoint import CheckpointError
    from lstm_numba.training.trainer import read_training_checkpoint

    try:
        saved = read_training_checkpoint(out).meta["train"]
    except CheckpointError:
        raise click.ClickException(f"{out} exists and is not a training checkpoint; choose another --out, "
                                   "or --force to overwrite it") from None
    mine = None if data is None else os.path.abspath(data)
    if (saved.get("task"), saved.get("data")) != (task, mine):
        theirs = saved.get("data") or "the embedded data"
        raise click.ClickException(f"{out} holds a {saved.get('task')} run on {theirs}; continue it with "
                                   "--resume, or --force to overwrite it (or choose another --out)")


def _resume(ctx, cfg, out, patience, client=None):
    from lstm_numba.training.config import TrainConfig
    from lstm_numba.training.trainer import Trainer

    if not os.path.isfile(out):
        raise click.ClickException(f"--resume: no checkpoint at {out} (name it with --out)")
    from lstm_numba.training.trainer import read_training_checkpoint

    saved = TrainConfig.from_dict(read_training_checkpoint(out).meta["train"])
    given = explicit_params(ctx) - _CLI_ONLY - _RESUME_MAY_CHANGE
    if "data_arg" in explicit_params(ctx):
        given.add("data")
    for name in sorted(given):
        mine, theirs = getattr(cfg, name, None), getattr(saved, name, None)
        if name == "data" and mine is not None:
            mine = os.path.abspath(mine)
        if mine != theirs:
            raise click.UsageError(
                f"--{name.replace('_', '-')} {mine} differs from the checkpoint's {theirs}; a resumed "
                "run keeps its settings (only --epochs and --patience may change)")
    overrides = {}
    explicit = explicit_params(ctx)
    if "epochs" in explicit:
        overrides["epochs"] = cfg.epochs
    if "patience" in explicit:
        overrides["patience"] = patience
    return Trainer.resume(out, client=client, **overrides)


def _header(trainer, out, resumed) -> str:
    cfg, task, model = trainer.config, trainer.task, trainer.model
    source = os.path.basename(task.path or "numbers-en-fr") + (" (embedded)" if getattr(task, "embedded", False) else "")
    rnn = model.rnn
    arch = (f"{cfg.gate} {rnn.hidden_size}x{rnn.num_layers}"
            + (" bidirectional" if rnn.bidirectional else "") + f" {cfg.dtype}")
    what = {"forecast": f"forecast {cfg.horizon} steps of {getattr(task, 'target', '')!r} from "
                        f"{cfg.window}-step windows",
            "classify": f"classify into {getattr(task, 'num_classes', '?')} classes",
            "charlm": f"character LM, vocabulary {getattr(getattr(task, 'vocab', None), 'size', '?')}, "
                      f"BPTT {cfg.window}",
            "translate": "translate with attention"}[cfg.task]
    lead = f"resuming {out} at epoch {trainer.state.epoch + 1}" if resumed else f"training -> {out}"
    where = ""
    if cfg.shards is not None:
        workers = getattr(trainer.shards, "checked", None)
        where = f", {cfg.shards} shards" + (f" on {len(workers)} Dask workers" if workers is not None else "")
    return (f"{lead}: {what} on {source}; {task.n_train} training sequences/epoch; {arch}; "
            f"{cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size}{where}, up to {cfg.epochs} epochs")


class _Progress:
    """A progress bar per epoch on a terminal; one plain line per epoch otherwise."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = is_tty(sys.stdout)
        self.bar = None

    def epoch_start(self, trainer, epoch, n_batches):
        self.loss, self.count, self.seqs, self.t0 = 0.0, 0, 0, time.perf_counter()
        if self.tty and not self.quiet:
            self.bar = click.progressbar(length=n_batches, label=f"epoch {epoch}/{trainer.config.epochs}",
                                         item_show_func=lambda text: text, width=24)
            self.bar.__enter__()

    def batch_end(self, trainer, loss, n):
        self.loss += loss
        self.count += 1
        self.seqs += n
        if self.bar is not None:
            rate = self.seqs / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(1, f"loss {self.loss / self.count:.4g}  {rate:,.0f} seq/s")

    def epoch_end(self, trainer, record):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        if self.quiet:
            return
        click.echo(_epoch_line(trainer, record))


def _epoch_line(trainer, r) -> str:
    parts = [f"epoch {r['epoch']:>3}/{trainer.config.epochs}", f"loss {r['train_loss']:.5g}",
             f"val {r['val_loss']:.5g}"]
    if "val_rmse" in r:
        parts.append(f"rmse {r['val_rmse']:.4g}")
    if "val_accuracy" in r:
        parts.append(f"acc {r['val_accuracy']:.3f}")
    if "val_bpc" in r:
        parts.append(f"bpc {r['val_bpc']:.4g}")
    if "val_exact" in r:
        parts.append(f"exact {100 * r['val_exact']:.1f}%  chrF {r['val_chrf']:.1f}")
    if r.get("seq_per_s"):
        parts.append(f"{r['seq_per_s']:,.0f} seq/s")
    parts.append(f"{r['seconds']:.2f}s")
    if r.get("best"):
        parts.append("*")
    return "  ".join(parts)


def _summary(trainer, out) -> list[str]:
    st, cfg, task = trainer.state, trainer.config, trainer.task
    lines = []
    how = (f"stopped early at epoch {st.epoch} (no better validation loss for {cfg.patience} epochs)"
           if st.stopped_early else f"{st.epoch} epochs")
    elapsed = getattr(trainer, "elapsed", None)
    lines.append(f"done: {how}, {st.step} steps" + (f", {elapsed:.1f} s" if elapsed is not None else "")
                 + f"; best validation loss {st.best_val:.5g} at epoch {st.best_epoch}"
                 + (" (weights restored)" if cfg.restore_best and st.best_epoch != st.epoch else ""))
    metrics = task.evaluate(trainer.model)
    if cfg.task == "forecast":
        lines.extend(_forecast_table(task, metrics, cfg))
    elif cfg.task == "classify":
        majority = max((task.y_val == c).mean() for c in range(task.num_classes))
        lines.append(f"validation ({task.describe_validation()}): accuracy {metrics['val_accuracy']:.3f}, "
                     f"cross-entropy {metrics['val_loss']:.4f} (majority class: accuracy {majority:.3f})")
    elif cfg.task == "translate":
        base = task.baseline()
        lines.append(f"validation ({task.describe_validation()}): exact match: {100 * metrics['val_exact']:.1f}%, "
                     f"chrF {metrics['val_chrf']:.1f} (nearest training source by edit distance: exact match "
                     f"{100 * base['exact']:.1f}%, chrF {base['chrf']:.1f})")
    else:
        lines.append(f"validation ({task.describe_validation()}): {metrics['val_bpc']:.3f} bits/char, "
                     f"cross-entropy {metrics['val_loss']:.4f} (uniform: "
                     f"{_log2(task.vocab.size):.3f} bits/char)")
        import numpy as np

        start = "\n" if "\n" in task.vocab.chars else task.vocab.chars[0]
        ids = trainer.model.sample(120, task.vocab.encode(start), temperature=0.8,
                                   rng=np.random.default_rng(cfg.seed))
        lines.append("sample: " + one_line(task.vocab.decode(ids)))
    lines.append(f"checkpoint: {out}")
    return lines


def _log2(n):
    import math

    return math.log2(n)


def _forecast_table(task, metrics, cfg) -> list[str]:
    base = task.baselines()
    rows = [(f"model ({cfg.gate})", metrics["val_rmse"], metrics["val_mae"])]
    rows += [(name, v["rmse"], v["mae"]) for name, v in base.items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"validation: {task.describe_validation()}",
             f"  {'':{width}}  {'RMSE':>9}  {'MAE':>9}"]
    lines += [f"  {name:{width}}  {rmse:9.4f}  {mae:9.4f}" for name, rmse, mae in rows]
    if base:
        best_name, best = min(base.items(), key=lambda kv: kv[1]["rmse"])
        gain = 1 - metrics["val_rmse"] / best["rmse"] if best["rmse"] > 0 else 0.0
        if metrics["val_rmse"] < best["rmse"]:
            lines.append(f"the model beats every naive forecast: RMSE {gain:.0%} below the best "
                         f"({best_name})")
        else:
            lines.append(f"the model does NOT beat the naive forecast ({best_name}): RMSE "
                         f"{metrics['val_rmse']:.4f} vs {best['rmse']:.4f}")
    return lines
