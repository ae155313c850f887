"""The checker's results: one :class:`CheckResult` per check, gathered in a :class:`PluginReport`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

#: Relative tolerance of the float64 finite-difference checks.
FD_RTOL = 1e-6


_MAX_DETAIL = 300


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, whether it passed and what was measured or went wrong."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class PluginReport:
    """What :func:`check_plugin` found. ``ok`` is true when every check passed."""

    kind: str
    name: str
    distribution: str = ""
    version: str = ""
    target: str = ""
    status: str = ""
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str = "") -> CheckResult:
        result = CheckResult(name, bool(ok), detail)
        self.checks.append(result)
        return result

    def __str__(self) -> str:
        origin = f"{self.distribution} {self.version}".strip() or "unknown distribution"
        head = f"{self.kind} {self.name!r} from {origin}"
        if self.target:
            head += f" ({self.target})"
        if self.status and self.status != "ok":
            head += f" [{self.status}]"
        verdict = "OK" if self.ok else f"FAILED ({len(self.failed)} of {len(self.checks)} checks)"
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"{head}: {verdict}"]
        lines += [f"  [{'pass' if c.ok else 'FAIL'}] {c.name:<{width}}  {c.detail}".rstrip() for c in self.checks]
        return "\n".join(lines)


def short_reason(exc: BaseException) -> str:
    """A one-line description of an exception (Numba's typing errors are pages long)."""
    from numba.core.errors import NumbaError

    if isinstance(exc, NumbaError):  # the complaint's first line and where, not pages
        from lstm_numba.nn.layers import compiler_complaint

        found = re.search(r'File "([^"]+)", line (\d+)', str(exc))
        where = f" (at {os.path.basename(found.group(1))} line {found.group(2)})" if found else ""
        return f"{type(exc).__name__}: {compiler_complaint(str(exc))}{where}"
    text = " ".join(str(exc).split())
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + " ..."
    return f"{type(exc).__name__}: {text}"


def run_check(report: PluginReport, label: str, check, *args) -> None:
    """Run one check; an exception (a Numba typing error, say) is that check's failure."""
    try:
        ok, detail = check(*args)
    except Exception as exc:  # a plugin can fail in any way: report, never raise
        ok, detail = False, short_reason(exc)
    report.add(label, ok, detail)
