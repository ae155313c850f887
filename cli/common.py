"""Helpers shared by the ``train``, ``predict`` and ``generate`` commands.

Only Click and the standard library are imported here, so ``--help`` stays fast and never
imports numba.

:func:`friendly_errors` turns every expected failure (bad file, bad value, bad
checkpoint, unknown plugin, diverging run) into one line ``Error: ...`` on stderr and exit
status 1; an unexpected exception becomes one line too, with a hint to set
``LSTM_NUMBA_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import functools
import os
import sys

import click

DEBUG_ENV = "LSTM_NUMBA_DEBUG"


def one_line(message) -> str:
    """Collapse a message onto one line."""
    return " ".join(str(message).split())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc)
    if isinstance(exc, KeyError):  # str(KeyError) is the repr of the key
        text = f"missing {text}"
    return text or type(exc).__name__


def friendly_errors(fn):
    """Decorate a command so that errors end it with one clear line and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.Abort, click.exceptions.Exit):
            raise
        except KeyboardInterrupt:
            raise click.Abort() from None
        except (ValueError, TypeError, OSError, KeyError, RuntimeError, ImportError) as exc:  # ImportError: a missing extra
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(one_line(_describe(exc))) from None
        except MemoryError as exc:  # NumPy's says how much it asked for
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(one_line(f"out of memory: {_describe(exc)}")) from None
        except Exception as exc:  # anything else is a bug: still one line, traceback on request
            if os.environ.get(DEBUG_ENV):
                raise
            raise click.ClickException(
                one_line(f"internal error: {type(exc).__name__}: {_describe(exc)} "
                         f"(set {DEBUG_ENV}=1 to see the traceback)")) from None

    return wrapper


class Command(click.Command):
    """A command whose usage errors (bad option values, unknown options) are one line,
    ``Error: ... (see 'lstm-numba CMD --help')``, like every other error."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line_usage(exc) from None


class Group(click.Group):
    """A group whose usage errors (an unknown command or option, a missing argument) are
    one line, like its commands' (:class:`Command`); its help still shows when it is run
    without arguments."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            if isinstance(exc, _NO_ARGS_IS_HELP):
                raise
            raise _one_line_usage(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            if isinstance(exc, _NO_ARGS_IS_HELP):
                raise
            raise _one_line_usage(exc) from None


#: Click 8.2+ shows a group's help through a UsageError subclass: it must pass untouched.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line_usage(exc: click.UsageError) -> click.ClickException:
    ctx = exc.ctx
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    error = click.ClickException(one_line(exc.format_message()) + hint)
    error.exit_code = exc.exit_code  # 2, as Click uses for usage errors
    return error


def split_names(text: str | None) -> list[str] | None:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; None or blank -> None."""
    if text is None or not text.strip():
        return None
    names = [name.strip() for name in text.split(",")]
    if any(not name for name in names):
        raise click.BadParameter(f"empty name in {text!r}", param_hint="'--columns'")
    return names


def is_tty(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def open_output(path: str):
    """A text file for writing (``-`` = stdout), creating parent directories."""
    if path == "-":
        return sys.stdout
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    return open(path, "w", encoding="utf-8", newline="")


def explicit_params(ctx: click.Context) -> set[str]:
    """Names of the parameters given on the command line or through the environment."""
    from click.core import ParameterSource

    sources = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {name for name in ctx.params if ctx.get_parameter_source(name) in sources}
