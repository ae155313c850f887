"""``lstm-numba profile``: time each phase of a training iteration and compare with torch.

Only Click is imported at module level, so ``lstm-numba profile --help`` does not import
numba; the work is in :mod:`lstm_numba.profiling`, imported when the command runs.
"""

from __future__ import annotations

import json

import click
from lstm_numba_cli.common import Command, friendly_errors

_SIZE = click.IntRange(min=1)
_MODEL_OPTIONS = ("input_size", "hidden_size", "layers", "gate", "dtype")


@click.command("profile", cls=Command)
@click.option("-T", "--steps", type=_SIZE, default=None, show_default="100, or the checkpoint's sequence length",
              help="Time steps per sequence.")
@click.option("-B", "--batch", type=_SIZE, default=None, show_default="64, or the checkpoint's batch size",
              help="Sequences per batch.")
@click.option("-I", "--input-size", type=_SIZE, default=128, show_default=True, help="Input features.")
@click.option("-H", "--hidden-size", type=_SIZE, default=256, show_default=True, help="Hidden units.")
@click.option("--layers", type=_SIZE, default=1, show_default=True, help="Stacked layers.")
@click.option("--gate", default="lstm", show_default=True,
              help="Gate plugin (see `lstm-numba plugins list`).")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--repeat", type=_SIZE, default=5, show_default=True,
              help="Timed iterations after one warm-up, and rounds of the comparison with torch "
                   "(medians are reported).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Profile the layer stored in this checkpoint (sizes, gate, dtype and weights).")
@click.option("--compile/--no-compile", "measure_compile", default=True, show_default=True,
              help="Measure the first call in fresh processes (cold cache: about 10 s).")
@click.option("--torch/--no-torch", "compare_torch", default=True, show_default=True,
              help="Compare with torch.nn.LSTM/GRU when torch is installed.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@friendly_errors
def profile(steps, batch, input_size, hidden_size, layers, gate, dtype, repeat, checkpoint, measure_compile,
            compare_torch, as_json):
    """Time each phase of forward/backward and compare with torch.nn.LSTM.

    Phases: compile (cold and cached, in fresh processes), input GEMM, forward kernel,
    backward kernel, backward GEMMs, optimizer step (Adam), and the time outside kernels.
    Also reports GFLOP/s, the share of this machine's matmul peak measured in the same run,
    the threads and BLAS libraries in use, and the speed ratio against torch (torch time /
    ours: above 1, lstm-numba is faster), both timed in --repeat rounds of alternating
    blocks, as benchmarks/bench_lstm.py times them.
    """
    ctx = click.get_current_context()
    notes = []
    if checkpoint is not None:
        explicit = [name for name in _MODEL_OPTIONS
                    if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
        if explicit:
            flags = ", ".join("--" + name.replace("_", "-") for name in explicit)
            raise click.UsageError(f"{flags} cannot be combined with --checkpoint (the checkpoint fixes the model)")
        model, info = _load_checkpoint_model(checkpoint)
        notes.append(f"checkpoint {checkpoint}: the {info['task']} model's recurrent layers, weights loaded")
        steps = steps or info["seq_len"] or 100
        batch = batch or info["batch_size"] or 64
    else:
        model = _build_model(input_size, hidden_size, layers, gate, dtype)
        steps = steps or 100
        batch = batch or 64

    from lstm_numba.profiling import report

    try:
        result = report.profile(model, steps, batch, repeat, compile=measure_compile, torch=compare_torch)
    except RuntimeError as exc:  # a compile subprocess failed
        raise click.ClickException(str(exc)) from exc
    result["notes"] = notes + result["notes"]
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        click.echo(report.format_report(result))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _build_model(input_size, hidden_size, layers, gate, dtype):
    from lstm_numba import LSTM, PluginError

    try:
        return LSTM(input_size, hidden_size, num_layers=layers, dtype=dtype, gate=gate, seed=0)
    except PluginError as exc:
        raise click.ClickException(f"--gate: {_one_line(exc)}") from exc
    except (TypeError, ValueError) as exc:
        raise click.ClickException(_one_line(exc)) from exc


def _load_checkpoint_model(path):
    from lstm_numba.profiling import report
    from lstm_numba.training.checkpoint import CheckpointError

    try:
        return report.model_from_checkpoint(path)
    except CheckpointError as exc:
        raise click.ClickException(_one_line(exc)) from exc
