"""Entry-point discovery for gate and activation plugins.

- Lazy: nothing is imported until a plugin is asked for, and then only the entry points
  of that name (``plugins()`` loads them all, for listing).
- Once: each entry point is loaded and validated at most once per process.
- Isolated: a plugin that fails to import or to validate is recorded as broken with its
  distribution and the reason. Only choosing it raises, with an error that names it;
  every other plugin keeps working.
- Duplicates: when several distributions register one name in a group, the built-in
  (distribution ``lstm-numba``) wins; otherwise the distribution whose name sorts first
  wins. The others are listed as ``shadowed`` and stay reachable by the qualified name
  ``"distribution:name"``.
"""

from __future__ import annotations

import inspect
import re
import threading
from dataclasses import dataclass, field
from importlib import metadata

from numba.core.dispatcher import Dispatcher

from lstm_numba.contract import Activation, ExtraParam, Gate, summary

GROUPS = {"gate": "lstm_numba.gates", "activation": "lstm_numba.activations"}
BUILTIN_DISTRIBUTION = "lstm-numba"
_EXTRA_PARAM_INITS = ("uniform", "zeros", "ones")
_RESERVED_PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class PluginError(ValueError):
    """A plugin that does not exist, is broken, or is shadowed was chosen."""


@dataclass(frozen=True)
class PluginEntry:
    """One registered plugin and what became of loading it."""

    kind: str
    name: str
    target: str
    distribution: str
    version: str
    status: str = "ok"  # "ok", "broken" or "shadowed"
    reason: str = ""
    description: str = ""  # the plugin's one line (contract.summary), for a plugin that loaded
    obj: object = field(default=None, compare=False, hash=False, repr=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.distribution}:{self.name}"


def _entry_points(group: str):
    """The installed entry points of ``group`` (tests replace this)."""
    return metadata.entry_points(group=group)


def _distribution_of(entry_point) -> tuple[str, str]:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "unknown", ""
    return dist.metadata["Name"] or "unknown", dist.version or ""


def _check_text(kind: str, plugin) -> None:
    for attr in ("doc", "description"):
        if not isinstance(getattr(plugin, attr), str):
            raise TypeError(f"{kind} {attr} must be a str, got {type(getattr(plugin, attr)).__name__}")


def _check_function(owner: str, obj, attr: str, n_args: int) -> None:
    fn = getattr(obj, attr, None)
    if fn is None:
        raise TypeError(f"{owner} has no '{attr}' function")
    if not isinstance(fn, Dispatcher):
        raise TypeError(f"{owner}.{attr} must be a Numba-jitted function "
                        f"(decorate it with lstm_numba.contract.pointwise), got {type(fn).__name__}")
    params = inspect.signature(fn.py_func).parameters
    if len(params) != n_args:
        raise TypeError(f"{owner}.{attr} must take {n_args} arguments, takes {len(params)}: "
                        f"({', '.join(params)})")


def validate_gate(gate) -> None:
    """Raise TypeError or ValueError if ``gate`` breaks the gate contract."""
    if not isinstance(gate, Gate):
        raise TypeError(f"expected a lstm_numba.contract.Gate, got {type(gate).__name__}")
    if not isinstance(gate.n_blocks, int) or gate.n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive int, got {gate.n_blocks!r}")
    names = gate.state_names
    if not isinstance(names, tuple) or not names or names[0] != "h" or not all(isinstance(n, str) for n in names):
        raise ValueError(f"state_names must be a tuple of str starting with 'h', got {names!r}")
    if not gate.recurrent and not gate.additive:
        raise ValueError("a gate without recurrent weights (recurrent=False) must be additive: its gh is always zero")
    if gate.scan is not None and (gate.recurrent or len(names) != 1 or gate.extra_params):
        raise ValueError("a gate with a scan form (scan=ScanForm(...)) must have one state, h, no recurrent weights "
                         "(recurrent=False) and no extra parameters")
    _check_text("gate", gate)
    _check_function("gate", gate, "forward", 8)
    _check_function("gate", gate, "backward", 12)
    for extra in gate.extra_params:
        if not isinstance(extra, ExtraParam):
            raise TypeError(f"extra_params must hold ExtraParam, got {type(extra).__name__}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", extra.name) or extra.name.startswith(_RESERVED_PARAM_NAMES):
            raise ValueError(f"extra parameter name {extra.name!r} is not a valid, unreserved identifier")
        if not isinstance(extra.blocks, int) or extra.blocks < 1:
            raise ValueError(f"extra parameter {extra.name!r}: blocks must be a positive int")
        if extra.init not in _EXTRA_PARAM_INITS:
            raise ValueError(f"extra parameter {extra.name!r}: init must be one of {_EXTRA_PARAM_INITS}")


def validate_activation(activation) -> None:
    """Raise TypeError or ValueError if ``activation`` breaks the activation contract."""
    if not isinstance(activation, Activation):
        raise TypeError(f"expected a lstm_numba.contract.Activation, got {type(activation).__name__}")
    _check_text("activation", activation)
    _check_function("activation", activation, "forward", 3)
    _check_function("activation", activation, "derivative", 4)
    for attr in ("alpha", "beta"):
        if not isinstance(getattr(activation, attr), (int, float)):
            raise TypeError(f"activation default {attr} must be a number")


_VALIDATORS = {"gate": validate_gate, "activation": validate_activation}


def _load(kind: str, entry_point) -> PluginEntry:
    distribution, version = _distribution_of(entry_point)
    base = dict(kind=kind, name=entry_point.name, target=entry_point.value,
                distribution=distribution, version=version)
    try:
        obj = entry_point.load()
    except Exception as exc:  # a plugin may raise anything on import: isolate it
        return PluginEntry(**base, status="broken", reason=f"import failed: {type(exc).__name__}: {exc}")
    try:
        _VALIDATORS[kind](obj)
    except (TypeError, ValueError) as exc:
        return PluginEntry(**base, status="broken", reason=f"invalid: {exc}")
    return PluginEntry(**base, description=summary(obj), obj=obj)


def _precedence(entry_point) -> tuple:
    distribution = _distribution_of(entry_point)[0]
    return (distribution != BUILTIN_DISTRIBUTION, distribution.lower(), entry_point.value)


def _check_kind(kind) -> None:
    if not isinstance(kind, str) or kind not in GROUPS:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, GROUPS))} or None, got {kind!r}")


class Registry:
    """Loads and caches the plugins of both groups; thread-safe."""

    def __init__(self):
        self._lock = threading.RLock()  # re-entrant: a plugin may query the registry on import
        self._entries: dict[tuple[str, str, str, str], PluginEntry] = {}

    def _candidates(self, kind: str, name: str | None):
        """Entry points of ``kind`` (named ``name`` when given), winner of each name first."""
        points = [ep for ep in _entry_points(GROUPS[kind]) if name is None or ep.name == name]
        return sorted(points, key=lambda ep: (ep.name, _precedence(ep)))

    def _entry(self, kind: str, entry_point, shadowed_by: str | None) -> PluginEntry:
        # The distribution is part of the key: two distributions may point one name at the
        # same target, and each must keep its own entry (and qualified name).
        key = (kind, entry_point.name, entry_point.value, _distribution_of(entry_point)[0])
        with self._lock:
            if key not in self._entries:
                self._entries[key] = _load(kind, entry_point)
            entry = self._entries[key]
        if shadowed_by and entry.status == "ok":
            return PluginEntry(**{**entry.__dict__, "status": "shadowed",
                                  "reason": f"shadowed by {shadowed_by}"})
        return entry

    def entries(self, kind: str | None = None, name: str | None = None) -> list[PluginEntry]:
        """Every registered plugin (loading each), winners before the ones they shadow."""
        if kind is not None:
            _check_kind(kind)
        result = []
        for k in ([kind] if kind else list(GROUPS)):
            winners: dict[str, str] = {}
            for ep in self._candidates(k, name):
                shadowed_by = winners.get(ep.name)
                winners.setdefault(ep.name, _distribution_of(ep)[0])
                result.append(self._entry(k, ep, shadowed_by))
        return result

    def get(self, kind: str, name: str) -> PluginEntry:
        """The working plugin chosen by ``name`` or ``"distribution:name"``; else PluginError."""
        _check_kind(kind)
        if not isinstance(name, str):
            raise TypeError(f"{kind}: expected a plugin name (a string), got {name!r}")
        distribution, _, short = name.rpartition(":")
        matches = [e for e in self.entries(kind, short) if not distribution or e.distribution == distribution]
        if not matches:
            known = sorted({e.qualified_name if distribution else e.name for e in self.entries(kind)})
            raise PluginError(f"unknown {kind} {name!r}; installed: {', '.join(known) or 'none'}")
        entry = matches[0]
        if entry.status == "broken":
            raise PluginError(f"{kind} plugin {name!r} from distribution {entry.distribution} "
                              f"{entry.version} is broken: {entry.reason}")
        return entry

    def clear(self) -> None:
        """Forget every loaded plugin (for tests)."""
        with self._lock:
            self._entries.clear()


REGISTRY = Registry()


def get_gate(name: str) -> PluginEntry:
    return REGISTRY.get("gate", name)


def get_activation(name: str) -> PluginEntry:
    return REGISTRY.get("activation", name)


def plugins(kind: str | None = None) -> list[PluginEntry]:
    """All registered plugins with their status, for ``lstm-numba plugins list``."""
    return REGISTRY.entries(kind)
