"""``lstm-numba generate``: sample text from a character-LM checkpoint.

Only Click is imported at module level; lstm_numba is imported when the command runs.
"""

from __future__ import annotations

import click
from lstm_numba_cli.common import Command, friendly_errors


@click.command("generate", cls=Command)
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--length", "-n", type=click.IntRange(min=0), default=300, show_default=True,
              help="Characters to generate after the prime.")
@click.option("--temperature", "-t", type=click.FloatRange(0, min_open=True), default=0.8, show_default=True,
              help="Softmax temperature: below 1 is more conservative, above 1 more random.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed of the sampling (the same seed gives the same text).")
@click.option("--prime", default=None,
              help="Text to start from; it warms up the state and is printed first. "
                   "Default: a newline (or the first vocabulary character).")
@friendly_errors
def generate(checkpoint, length, temperature, seed, prime):
    """Sample text from a character-level CHECKPOINT (trained on a .txt file)."""
    import numpy as np

    from lstm_numba.training.data.text import CharVocab
    from lstm_numba.training.trainer import load_trained

    trained = load_trained(checkpoint)
    if trained.task != "charlm":
        raise click.ClickException(f"{checkpoint} is a {trained.task} model; generate needs a "
                                   "character LM (train one on a .txt file)")
    vocab = CharVocab.from_dict(trained.data["vocab"])
    shown = prime
    if not prime:
        prime = "\n" if "\n" in vocab.chars else vocab.chars[0]
        shown = ""
    missing = sorted(set(prime) - set(vocab.chars))
    if missing:
        raise click.ClickException(
            f"--prime has characters the model never saw: {''.join(missing)!r}")
    ids = trained.model.sample(length, vocab.encode(prime), temperature=temperature,
                               rng=np.random.default_rng(seed))
    click.echo(shown + vocab.decode(ids))
