"""``lstm-numba plugins``: list the installed gate and activation plugins, check one.

Only Click is imported at module level, so ``lstm-numba plugins --help`` (and the help of
its subcommands) does not import numba.
"""

from __future__ import annotations

import json

import click
from lstm_numba_cli.common import Command, Group, friendly_errors

_KINDS = click.Choice(["gate", "activation"])


@click.group("plugins", cls=Group)
def plugins():
    """List and check gate and activation plugins.

    Plugins are registered through the entry-point groups lstm_numba.gates and
    lstm_numba.activations; the built-ins take the same path as third parties.
    """


@plugins.command("list", cls=Command)
@click.option("--kind", type=_KINDS, default=None, help="Only gates or only activations.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@friendly_errors
def list_plugins(kind, as_json):
    """Show every plugin with its distribution, version, status and a one-line description.

    The description is the plugin's own (its ``description``, else the first line of its
    docstring); for a plugin that is not ok, the reason stands in its place. Status is ok,
    broken (failed to import or to validate; the reason says why) or
    shadowed (another distribution's plugin of the same name wins; reach this one as
    DISTRIBUTION:NAME). A broken plugin does not stop the others from working.
    """
    from lstm_numba.registry import plugins as registered

    entries = registered(kind)
    if as_json:
        rows = [{"name": e.name, "kind": e.kind, "distribution": e.distribution, "version": e.version,
                 "status": e.status, "reason": e.reason, "description": e.description, "target": e.target}
                for e in entries]
        click.echo(json.dumps(rows, indent=2))
        return
    if not entries:
        click.echo("no plugins registered")
        return
    header = ("NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS", "DESCRIPTION")
    rows = [(e.name, e.kind, e.distribution, e.version or "-", e.status, e.reason if e.reason else e.description)
            for e in entries]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
        click.echo("  ".join(cells + [str(row[-1])]).rstrip())
    counts = {status: sum(e.status == status for e in entries) for status in ("ok", "broken", "shadowed")}
    click.echo(f"\n{len(entries)} plugins: " + ", ".join(f"{n} {status}" for status, n in counts.items()))


@plugins.command("check", cls=Command)
@click.argument("name")
@click.option("--kind", type=_KINDS, default=None,
              help="Whether NAME is a gate or an activation (needed only when both exist).")
@friendly_errors
def check_plugin(name, kind):
    """Check plugin NAME (finite differences, shapes, dtypes); exit 1 on failure.

    Prints the report; the exit code is 1 when the check fails or the plugin cannot be
    loaded.
    """
    import lstm_numba as ln

    try:
        report = ln.check_plugin(name, kind)
    except ln.PluginError as exc:
        raise click.ClickException(" ".join(str(exc).split())) from exc
    click.echo(str(report))
    if not report.ok:
        ctx = click.get_current_context()
        ctx.exit(1)
