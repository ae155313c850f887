"""``lstm-numba plugins``: list (table and JSON), check, broken plugins, and help without numba."""

import dataclasses
import json
import re
import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner
from lstm_numba_cli.main import cli
from lstm_numba_plugins.gates.lstm import gate as lstm_gate

BUILTIN_GATES = {"lstm", "peephole", "coupled", "gru", "slstm", "indrnn", "layernorm_lstm", "layernorm_gru", "mingru",
                 "minlstm"}
BUILTIN_ACTIVATIONS = {"sigmoid", "tanh", "hard_sigmoid", "relu", "leaky_relu", "elu", "softsign", "softplus",
                       "scaled_tanh"}


def help_imports_numba(args) -> bool:
    code = ("import sys; from click.testing import CliRunner; from lstm_numba_cli.main import cli; "
            f"r = CliRunner().invoke(cli, {args!r}); "
            "assert r.exit_code == 0, r.output; assert 'Usage:' in r.output, r.output; "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("args", [["plugins", "--help"], ["plugins", "list", "--help"],
                                  ["plugins", "check", "--help"], ["plugins", "-h"]])
def test_help_does_not_import_numba(args):
    assert not help_imports_numba(args)


@pytest.fixture
def fresh_registry():
    from lstm_numba import registry

    registry.REGISTRY.clear()
    yield registry
    registry.REGISTRY.clear()


def test_list_shows_builtins_ok(fresh_registry):
    result = CliRunner().invoke(cli, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by_kind = {(r["kind"], r["name"]): r for r in rows}
    for kind, names in (("gate", BUILTIN_GATES), ("activation", BUILTIN_ACTIVATIONS)):
        for name in names:
            row = by_kind[(kind, name)]
            assert row["status"] == "ok", row
            assert row["distribution"] == "lstm-numba"
            assert row["version"]
            assert row["reason"] == ""


def test_list_table(fresh_registry):
    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS", "DESCRIPTION"]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[1:] if line.strip() and "plugins:" not in line}
    for name in BUILTIN_GATES:
        assert rows[(name, "gate")][2:5][0] == "lstm-numba" and rows[(name, "gate")][4] == "ok"
    for name in BUILTIN_ACTIVATIONS:
        assert rows[(name, "activation")][4] == "ok"
    assert "0 broken" in lines[-1]


def test_list_describes_every_builtin_in_one_line_with_its_source(fresh_registry):
    """The DESCRIPTION column is the plugin's declared one line: for every gate, the source of
    its equations (a paper's year or the library whose form it follows)."""
    from lstm_numba import registry

    lines = CliRunner().invoke(cli, ["plugins", "list"]).output.splitlines()
    column = lines[0].index("DESCRIPTION")
    shown = {tuple(line.split()[:2]): line[column:] for line in lines[1:] if line.strip() and "plugins:" not in line}
    for kind, names in (("gate", BUILTIN_GATES), ("activation", BUILTIN_ACTIVATIONS)):
        for name in names:
            declared = (registry.get_gate if kind == "gate" else registry.get_activation)(name).description
            assert declared and "\n" not in declared, name
            assert shown[(name, kind)] == declared, name
    for name in BUILTIN_GATES:
        assert re.search(r"(19|20)\d\d|ONNX|torch|haste", shown[(name, "gate")]), name
    rows = json.loads(CliRunner().invoke(cli, ["plugins", "list", "--json"]).stdout)
    assert all(r["description"] for r in rows)


#: A third-party gate that declares no description: its docstring's first line stands in.
UNDESCRIBED = dataclasses.replace(lstm_gate, description="", doc="\n  Elman-like test gate,\n  second line.\n")


def test_a_plugin_without_description_shows_its_docstring_first_line(fresh_registry, monkeypatch):
    fake = EntryPoint(name="undescribed", value=f"{__name__}:UNDESCRIBED", group="lstm_numba.gates")
    _with_fake(monkeypatch, fresh_registry, fake)
    rows = json.loads(CliRunner().invoke(cli, ["plugins", "list", "--json"]).stdout)
    row = next(r for r in rows if r["name"] == "undescribed")
    assert row["status"] == "ok" and row["description"] == "Elman-like test gate,"


def test_list_kind_filter(fresh_registry):
    result = CliRunner().invoke(cli, ["plugins", "list", "--kind", "gate", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["kind"] for r in json.loads(result.stdout)} == {"gate"}


def _with_fake(monkeypatch, registry, *fakes):
    real = registry._entry_points

    def entry_points(group):
        return list(real(group)) + [ep for ep in fakes if ep.group == group]

    monkeypatch.setattr(registry, "_entry_points", entry_points)
    registry.REGISTRY.clear()


def test_broken_plugin_listed_as_broken(fresh_registry, monkeypatch):
    fake = EntryPoint(name="brokengate", value="lstm_numba_no_such_module_xyz:gate", group="lstm_numba.gates")
    _with_fake(monkeypatch, fresh_registry, fake)
    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("brokengate"))
    assert "broken" in line and "import failed" in line and "lstm_numba_no_such_module_xyz" in line
    assert "1 broken" in result.output.splitlines()[-1]
    rows = json.loads(CliRunner().invoke(cli, ["plugins", "list", "--json"]).stdout)
    statuses = {r["name"]: r["status"] for r in rows if r["kind"] == "gate"}
    assert statuses["brokengate"] == "broken"
    assert all(statuses[name] == "ok" for name in BUILTIN_GATES)  # the others keep working


def test_invalid_plugin_listed_as_broken(fresh_registry, monkeypatch):
    # Imports fine but is not a Gate: broken with an "invalid" reason.
    fake = EntryPoint(name="notagate", value="lstm_numba_plugins.activations:tanh", group="lstm_numba.gates")
    _with_fake(monkeypatch, fresh_registry, fake)
    rows = json.loads(CliRunner().invoke(cli, ["plugins", "list", "--json"]).stdout)
    row = next(r for r in rows if r["name"] == "notagate")
    assert row["status"] == "broken" and row["reason"].startswith("invalid")


class _Report:
    def __init__(self, ok, text):
        self.ok = ok
        self._text = text

    def __str__(self):
        return self._text


@pytest.mark.parametrize("ok, code", [(True, 0), (False, 1)])
def test_check_exit_code_follows_report(monkeypatch, ok, code):
    import lstm_numba

    calls = []

    def fake_check(name, kind=None):
        calls.append((name, kind))
        return _Report(ok, f"stub report for {name}")

    monkeypatch.setattr(lstm_numba, "check_plugin", fake_check)
    result = CliRunner().invoke(cli, ["plugins", "check", "somegate", "--kind", "gate"])
    assert result.exit_code == code, result.output
    assert "stub report for somegate" in result.output
    assert calls == [("somegate", "gate")]


def test_check_plugin_error_is_one_line(monkeypatch):
    import lstm_numba

    def fake_check(name, kind=None):
        raise lstm_numba.PluginError(f"unknown gate {name!r};\ninstalled: lstm")

    monkeypatch.setattr(lstm_numba, "check_plugin", fake_check)
    result = CliRunner().invoke(cli, ["plugins", "check", "nope"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: unknown gate 'nope'; installed: lstm"]


def test_check_lstm_passes(fresh_registry):
    result = CliRunner().invoke(cli, ["plugins", "check", "lstm"])
    assert result.exit_code == 0, result.output
    assert "lstm" in result.output


def test_check_unknown_fails(fresh_registry):
    result = CliRunner().invoke(cli, ["plugins", "check", "no_such_plugin_xyz"])
    assert result.exit_code == 1, result.output
    assert "no_such_plugin_xyz" in result.output
    assert "Traceback" not in result.output


def test_check_broken_fails(fresh_registry, monkeypatch):
    fake = EntryPoint(name="brokengate", value="lstm_numba_no_such_module_xyz:gate", group="lstm_numba.gates")
    _with_fake(monkeypatch, fresh_registry, fake)
    result = CliRunner().invoke(cli, ["plugins", "check", "brokengate"])
    assert result.exit_code == 1, result.output
    assert "lstm_numba_no_such_module_xyz" in result.output
