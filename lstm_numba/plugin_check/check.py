"""``check_plugin``: find a plugin by name and run its kind's checks.
"""

from __future__ import annotations

from lstm_numba import registry
from lstm_numba.plugin_check.activations import check_activation
from lstm_numba.plugin_check.gates import check_gate
from lstm_numba.plugin_check.results import PluginReport


def _find(kind: str | None, name: str):
    """(kind, entry or None, error message) for ``name`` or ``"distribution:name"``."""
    kinds = [kind] if kind else ["gate", "activation"]
    distribution, _, short = name.rpartition(":")
    for k in kinds:
        entries = [e for e in registry.REGISTRY.entries(k, short)
                   if not distribution or e.distribution == distribution]
        if entries:
            try:
                return k, registry.REGISTRY.get(k, name), ""
            except registry.PluginError as exc:
                return k, entries[0], str(exc)
    try:  # the registry's own message lists what is installed
        registry.REGISTRY.get(kinds[0], name)
    except registry.PluginError as exc:
        message = str(exc)
    else:  # pragma: no cover - found after all
        message = f"{name!r} appeared while it was being looked up"
    if not kind:
        message = f"no gate or activation named {name!r} ({message})"
    return kind or "plugin", None, message


def check_plugin(name: str, kind: str | None = None) -> PluginReport:
    """Check the gate or activation plugin ``name`` (``"distribution:name"`` also works).

    ``kind`` is ``"gate"``, ``"activation"`` or None (look among the gates first, then the
    activations). Returns a :class:`PluginReport`; a missing or broken plugin gives a
    report with ``ok`` false and the registry's reason, not an exception.
    """
    if kind not in (None, "gate", "activation"):
        raise ValueError(f"kind: expected 'gate', 'activation' or None, got {kind!r}")
    if not isinstance(name, str):
        raise TypeError(f"name: expected a plugin name (a string), got {name!r}")
    if not name.rpartition(":")[2].strip():
        raise ValueError(f"name: expected a plugin name, got {name!r}")
    found_kind, entry, error = _find(kind, name)
    report = PluginReport(kind=found_kind, name=name)
    if entry is not None:
        report.distribution, report.version = entry.distribution, entry.version
        report.target, report.status = entry.target, entry.status
    if error or entry is None:
        report.add("load", False, error)
        return report
    report.add("load", True, f"{entry.target} ({entry.status})")
    if found_kind == "gate":
        check_gate(report, entry, name)
    else:
        check_activation(report, entry)
    return report
