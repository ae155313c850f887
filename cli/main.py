"""The ``lstm-numba`` Click group. Subcommands are imported only when invoked, so
``lstm-numba --help`` is fast and does not import numba (click docs: "Lazily Loading
Subcommands")."""

from __future__ import annotations

import importlib
import logging

import click
from lstm_numba_cli.common import Group

#: name -> "module:attribute" of each subcommand, imported on first use.
SUBCOMMANDS = {
    "train": "lstm_numba_cli.train:train",
    "predict": "lstm_numba_cli.predict:predict",
    "generate": "lstm_numba_cli.generate:generate",
    "profile": "lstm_numba_cli.profile:profile",
    "plugins": "lstm_numba_cli.plugins:plugins",
    "export": "lstm_numba_cli.export:export",
    "plot": "lstm_numba_cli.plot:plot",
    "sweep": "lstm_numba_cli.sweep:sweep",
    "translate": "lstm_numba_cli.translate:translate",
}

#: One-line help shown by ``lstm-numba --help`` without importing the subcommand.
SHORT_HELP = {
    "train": "Train a model on a CSV, a text file or labelled sequences (default: embedded CO2 series).",
    "predict": "Forecast or classify with a checkpoint; writes CSV.",
    "generate": "Sample text from a character-level checkpoint.",
    "profile": "Time each phase of forward/backward and compare with torch.nn.LSTM.",
    "plugins": "List and check gate and activation plugins.",
    "export": "Export a checkpoint as an ONNX model (with its normalisation).",
    "plot": "Plot a checkpoint's loss curve and its task's picture as PNGs.",
    "sweep": "Train every combination of a hyper-parameter grid (on a Dask cluster) and rank them.",
    "translate": "Translate texts with a translation checkpoint (train --task translate).",
}


class LazyGroup(Group):
    """A group whose subcommands are imported when they are run or asked for help (its usage
    errors are one line, as :class:`lstm_numba_cli.common.Group`'s)."""

    def list_commands(self, ctx):
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx, name):
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, SHORT_HELP[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup,
             context_settings={"auto_envvar_prefix": "LSTM_NUMBA", "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lstm-numba")
def cli():
    """Fast CPU LSTM-family recurrent networks, compiled with Numba.

    Every option can also be set through an environment variable named
    LSTM_NUMBA_<COMMAND>_<OPTION>, e.g. LSTM_NUMBA_TRAIN_EPOCHS=5.
    """
    show_library_notices()


class _StderrNotices(logging.Handler):
    """Writes the library's notices (a first run's compile) to the current stderr."""

    def emit(self, record):
        click.echo(self.format(record), err=True)


def show_library_notices() -> None:
    """Show the ``lstm_numba`` logger's INFO notices on stderr (once per process)."""
    logger = logging.getLogger("lstm_numba")
    if not any(isinstance(h, _StderrNotices) for h in logger.handlers):
        logger.addHandler(_StderrNotices())
        logger.setLevel(logging.INFO)
