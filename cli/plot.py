"""``lstm-numba plot``: PNGs of a checkpoint's loss curve and its task's picture.

Only Click is imported at module level; lstm_numba and matplotlib when the command runs.
"""

from __future__ import annotations

import re

import click
from lstm_numba_cli.common import Command, friendly_errors


def _size(ctx, param, value):
    match = re.fullmatch(r"(\d+)x(\d+)", value.strip().lower())
    if not match:
        raise click.BadParameter(f"expected WIDTHxHEIGHT in pixels, e.g. 900x500, got {value!r}")
    return int(match.group(1)), int(match.group(2))


@click.command("plot", cls=Command)
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), default="plots", show_default=True,
              help="Directory to write the PNGs into (created if needed).")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="The training data, when it is no longer where the checkpoint says.")
@click.option("--size", callback=_size, default="900x500", show_default=True,
              help="Width x height of each PNG in pixels.")
@friendly_errors
def plot(checkpoint, out, data, size):
    """Plot a trained CHECKPOINT: loss.png (loss per epoch) and the task's picture.

    \b
    forecast.png   validation forecasts against the truth, beside the naive forecasts
    confusion.png  the classifier's confusion matrix on its validation split
    charlm.png     per-character loss of the character LM on its validation text
    """
    from lstm_numba.interop.plots import plot_checkpoint

    for path in plot_checkpoint(checkpoint, out, data=data, size=size):
        click.echo(f"wrote {path} ({size[0]}x{size[1]})")
