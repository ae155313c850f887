"""``lstm-numba export``: a training checkpoint as an ONNX model.

Only Click is imported at module level; lstm_numba (and onnx) when the command runs.
"""

from __future__ import annotations

import os

import click
from lstm_numba_cli.common import Command, friendly_errors


def _shape(value_info) -> str:
    dims = value_info.type.tensor_type.shape.dim
    return "(" + ", ".join(d.dim_param or str(d.dim_value) for d in dims) + ")"


@click.command("export", cls=Command)
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--opset", type=click.IntRange(min=14), default=17, show_default=True,
              help="ONNX opset of the graph (14 or later).")
@click.option("--lengths/--no-lengths", default=None,
              help="Add an int32 'lengths' input (valid steps per row). Default: on for a classifier, "
                   "off otherwise.")
@click.option("--initial-state", is_flag=True, default=False,
              help="Character LM: add initial-state inputs h0 (and c0), (layers, batch, hidden), to carry "
                   "the state between calls.")
@click.option("--raw", is_flag=True, default=False,
              help="Export the bare model, without the task's input normalisation and the forecaster's "
                   "conversion back to original units.")
@friendly_errors
def export(checkpoint, out, opset, lengths, initial_state, raw):
    """Write a trained CHECKPOINT as the ONNX model OUT (see docs/onnx.md).

    \b
    The graph takes data as `lstm-numba predict` reads it: a forecaster takes the last
    `window` rows of its columns in original units ('values') and returns 'forecast' in
    original units; a classifier takes raw features 'x' (and 'lengths') and returns
    'logits' and 'probabilities'; a character LM takes 'ids' (its vocabulary is in the
    model's metadata) and returns 'logits', 'probabilities' and its final state.
    """
    from lstm_numba.interop.onnx_export import export_onnx
    from lstm_numba.training.trainer import load_trained

    trained = load_trained(checkpoint)
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    model = export_onnx(trained, out, opset=opset, sequence_lens=lengths, initial_state=initial_state,
                        preprocess=not raw)
    inputs = ", ".join(f"{i.name} {_shape(i)}" for i in model.graph.input)
    outputs = ", ".join(f"{o.name} {_shape(o)}" for o in model.graph.output)
    click.echo(f"wrote {out}: {trained.task} model, opset {opset}; inputs {inputs}; outputs {outputs}")
