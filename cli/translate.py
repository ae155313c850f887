"""``lstm-numba translate``: translate texts with a translation checkpoint.

Only Click is imported at module level; lstm_numba is imported when the command runs.
"""

from __future__ import annotations

import sys

import click
from lstm_numba_cli.common import Command, friendly_errors


@click.command("translate", cls=Command)
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("texts", nargs=-1)
@click.option("--beam", type=click.IntRange(min=1), default=None,
              help="Beam width (1: greedy). Default: the checkpoint's decoding default.")
@click.option("--length-penalty", type=click.FloatRange(min=0), default=None,
              help="Beam search ranks finished sequences by log P / length ** this. Default: the checkpoint's.")
@friendly_errors
def translate(checkpoint, texts, beam, length_penalty):
    """Translate TEXTS (or, without any, one text per line of stdin) with a translation
    CHECKPOINT (`lstm-numba train --task translate`); prints one translation per line."""
    from lstm_numba.nn.text_metrics import pad_ids
    from lstm_numba.training.data.pairs import TokenVocab
    from lstm_numba.training.trainer import load_trained

    trained = load_trained(checkpoint)
    if trained.task != "translate":
        raise click.ClickException(f"{checkpoint} is a {trained.task} model; translate needs a translation "
                                   "checkpoint (lstm-numba train --task translate)")
    src_vocab = TokenVocab.from_dict(trained.data["src_vocab"])
    tgt_vocab = TokenVocab.from_dict(trained.data["tgt_vocab"])
    texts = list(texts) or [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        raise click.ClickException("no text to translate: give texts as arguments or one per line on stdin")
    ids = []
    for i, text in enumerate(texts, 1):
        try:
            ids.append(src_vocab.encode(text, f"text {i} ({text!r})"))
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    src, lengths = pad_ids(ids)
    out = trained.model.translate(src, lengths, beam=beam or trained.data["beam"], max_len=trained.data["max_len"],
                                  length_penalty=trained.data["length_penalty"] if length_penalty is None
                                  else length_penalty)
    for row in out:
        click.echo(tgt_vocab.decode(row))
