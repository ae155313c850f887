"""The plugin registry with fake entry points: broken, invalid, wrong and duplicate plugins.

Fake plugins are real modules written to a temporary directory on ``sys.path`` and real
``importlib.metadata`` distributions (a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt``), so the registry sees exactly what an installed package gives it.
``lstm_numba.registry._entry_points`` is monkeypatched to add them to the installed ones.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import lstm_numba_plugins.gates.gru
import lstm_numba_plugins.gates.lstm
import numpy as np
import pytest

import lstm_numba as ln
from lstm_numba import registry
from lstm_numba.plugin_check import gates as gate_checks
from lstm_numba.registry import REGISTRY, PluginError

BUILTIN_GATES = {"lstm", "peephole", "coupled", "gru", "slstm", "indrnn", "layernorm_lstm", "layernorm_gru", "mingru",
                 "minlstm"}
BUILTIN_ACTIVATIONS = {"sigmoid", "tanh", "hard_sigmoid", "relu", "leaky_relu", "elu", "softsign", "softplus",
                       "scaled_tanh"}


@pytest.fixture(autouse=True)
def clean_registry():
    REGISTRY.clear()
    yield
    REGISTRY.clear()


class FakePlugins:
    """Writes plugin modules and distributions under ``root`` and serves their entry points."""

    def __init__(self, root, monkeypatch):
        self.root = root / "modules"        # on sys.path
        self.dists = root / "dists"         # not on sys.path: the real entry_points() must not see them
        self.root.mkdir()
        self.dists.mkdir()
        self.modules = []
        monkeypatch.syspath_prepend(str(self.root))
        real = registry._entry_points
        monkeypatch.setattr(registry, "_entry_points", lambda group: list(real(group)) + self.entry_points(group))

    def module(self, name: str, source: str) -> str:
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(name, None)
        importlib.invalidate_caches()
        self.modules.append(name)
        return name

    def distribution(self, name: str, version: str, gates=None, activations=None) -> None:
        info = self.dists / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        lines = []
        for group, points in (("lstm_numba.gates", gates), ("lstm_numba.activations", activations)):
            if points:
                lines.append(f"[{group}]")
                lines += [f"{ep_name} = {target}" for ep_name, target in points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    def entry_points(self, group: str):
        points = []
        for dist in metadata.distributions(path=[str(self.dists)]):
            points += [ep for ep in dist.entry_points if ep.group == group]
        return points

    def cleanup(self):
        for name in self.modules:
            sys.modules.pop(name, None)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    plugins = FakePlugins(tmp_path, monkeypatch)
    yield plugins
    plugins.cleanup()


# A correct little activation (softsign) and gate (an Elman RNN: h = act(gx + gh + bias)).
GOOD_ACTIVATION = """
    from lstm_numba.contract import Activation, one, pointwise

    @pointwise
    def forward(x, alpha, beta):
        return x / (one(x) + abs(x))

    @pointwise
    def derivative(x, y, alpha, beta):
        d = one(x) + abs(x)
        return one(x) / (d * d)

    activation = Activation(forward, derivative)
"""

# The same with a wrong derivative (the square is missing).
WRONG_ACTIVATION = GOOD_ACTIVATION.replace("return one(x) / (d * d)", "return one(x) / d")

# A gate that gets three things wrong: its backward drops act's derivative, it overwrites
# dp instead of adding to it and leaves ds_prev unwritten, and its forward multiplies by a
# Python float literal, which promotes float32 to float64.
SLOPPY_GATE = """
    from lstm_numba.contract import ExtraParam, Gate, pointwise

    @pointwise
    def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
        for j in range(s_next.size):
            s_next[j] = act(gx[j] + gh[j] + p[j])[0] * 1.1

    @pointwise
    def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
        for j in range(ds_next.size):
            dz = ds_next[j]
            dgx[j] = dz
            dgh[j] = dz
            dp[j] = dz

    gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward,
                extra_params=(ExtraParam("bias_extra", blocks=1, init="zeros"),))
"""

# A correct gate that mixes hidden units (unit j reads unit j + 1 of h_prev) but declares
# itself elementwise: only the ``elementwise`` check can catch it.
MIXING_GATE = """
    from lstm_numba.contract import Gate, pointwise

    @pointwise
    def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
        n = s_next.size
        for j in range(n):
            s_next[j] = act(gx[j] + gh[j] + s_prev[(j + 1) % n])[0]

    @pointwise
    def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
        n = ds_next.size
        for j in range(n):
            dz = ds_next[j] * act(gx[j] + gh[j] + s_prev[(j + 1) % n])[1]
            dgx[j] = dz
            dgh[j] = dz
            ds_prev[(j + 1) % n] = dz

    gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward, elementwise=True)
"""


# --------------------------------------------------------------------------- built-ins


def test_builtins_are_registered_through_entry_points():
    entries = ln.plugins()
    gates = {e.name for e in entries if e.kind == "gate"}
    activations = {e.name for e in entries if e.kind == "activation"}
    assert BUILTIN_GATES <= gates
    assert BUILTIN_ACTIVATIONS <= activations
    for entry in entries:
        if entry.name in BUILTIN_GATES | BUILTIN_ACTIVATIONS and entry.distribution == "lstm-numba":
            assert entry.status == "ok", entry
            assert entry.target.startswith("lstm_numba_plugins.")
            assert entry.version == ln.__version__


def test_unknown_name_lists_the_installed_ones():
    with pytest.raises(PluginError, match=r"unknown gate 'no_such_gate'.*lstm"):
        registry.get_gate("no_such_gate")
    with pytest.raises(PluginError, match="no_such_gate"):
        ln.LSTM(2, 2, gate="no_such_gate")
    report = ln.check_plugin("no_such_gate")
    assert not report.ok
    assert "no gate or activation named 'no_such_gate'" in str(report)


def test_loading_is_lazy_and_once(fake, monkeypatch):
    fake.module("lnt_lazy_act", GOOD_ACTIVATION)
    fake.distribution("lazy-dist", "1.0", activations={"lazy_act": "lnt_lazy_act:activation"})
    calls = []
    # Count on the class of the entry points the registry really gets (importlib.metadata's
    # EntryPoint, which may be another module object's than this file's ``metadata``).
    for cls in {type(ep) for group in registry.GROUPS.values() for ep in registry._entry_points(group)}:
        def counting_load(self, real_load=cls.load):
            calls.append(self.name)
            return real_load(self)

        monkeypatch.setattr(cls, "load", counting_load)
    ln.plugins  # noqa: B018 - importing the package loads no plugin
    assert "lnt_lazy_act" not in sys.modules
    registry.get_activation("tanh")
    assert calls == ["tanh"], "asking for one plugin must load only the entry points of that name"
    registry.get_activation("tanh")
    registry.get_activation("lazy_act")
    registry.get_activation("lazy_act")
    assert calls == ["tanh", "lazy_act"], "each entry point loads once"
    assert "lnt_lazy_act" in sys.modules
    REGISTRY.clear()
    registry.get_activation("lazy_act")
    assert calls[-1] == "lazy_act"


# --------------------------------------------------------------------------- broken plugins


def test_plugin_that_raises_on_import_is_isolated(fake):
    fake.module("lnt_explodes", "raise RuntimeError('boom: missing CUDA')\n")
    fake.module("lnt_fine_act", GOOD_ACTIVATION)
    fake.distribution("explosive-plugins", "2.3", gates={"explodes": "lnt_explodes:gate"},
                      activations={"fine_act": "lnt_fine_act:activation"})

    entries = {(e.kind, e.name): e for e in ln.plugins()}
    broken = entries[("gate", "explodes")]
    assert broken.status == "broken"
    assert broken.distribution == "explosive-plugins" and broken.version == "2.3"
    assert "import failed" in broken.reason and "RuntimeError: boom: missing CUDA" in broken.reason
    assert entries[("activation", "fine_act")].status == "ok"       # its sibling still works
    assert all(entries[("gate", g)].status == "ok" for g in BUILTIN_GATES)

    with pytest.raises(PluginError) as info:
        ln.LSTM(2, 3, gate="explodes")
    message = str(info.value)
    assert "'explodes'" in message and "explosive-plugins" in message and "boom" in message

    rnn = ln.LSTM(2, 3, gate="lstm", dtype="float64", seed=0)     # others keep working
    y, _ = rnn(np.zeros((2, 1, 2)))
    assert y.shape == (2, 1, 3)

    report = ln.check_plugin("explodes")
    assert not report.ok and report.kind == "gate"
    assert report.distribution == "explosive-plugins" and report.version == "2.3"
    assert [c.name for c in report.checks] == ["load"]
    assert "boom: missing CUDA" in report.checks[0].detail
    assert "FAIL" in str(report) and "explosive-plugins" in str(report)


INVALID_GATES = {
    "no_backward": ("""
        from lstm_numba.contract import Gate, pointwise
        @pointwise
        def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
            pass
        gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=None)
        """, "has no 'backward' function"),
    "not_jitted": ("""
        from lstm_numba.contract import Gate, pointwise
        def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
            pass
        @pointwise
        def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
            pass
        gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward)
        """, "must be a Numba-jitted function"),
    "wrong_arity": ("""
        from lstm_numba.contract import Gate, pointwise
        @pointwise
        def forward(gx, gh, s_prev, p, act, ract, s_next):
            pass
        @pointwise
        def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
            pass
        gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward)
        """, "must take 8 arguments, takes 7"),
    "not_a_gate": ("gate = {'forward': None}\n", "expected a lstm_numba.contract.Gate, got dict"),
    "missing_attribute": ("other = 1\n", "import failed: AttributeError"),
    "reserved_param": ("""
        from lstm_numba.contract import ExtraParam, Gate, pointwise
        @pointwise
        def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
            pass
        @pointwise
        def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
            pass
        gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward,
                    extra_params=(ExtraParam("weight_hh_extra", blocks=1),))
        """, "not a valid, unreserved identifier"),
}


@pytest.mark.parametrize("case", sorted(INVALID_GATES))
def test_invalid_gate_is_listed_broken_with_its_reason(fake, case):
    source, reason = INVALID_GATES[case]
    module = fake.module(f"lnt_invalid_{case}", source)
    fake.distribution(f"invalid-{case.replace('_', '-')}", "0.1", gates={case: f"{module}:gate"})
    (entry,) = [e for e in ln.plugins("gate") if e.name == case]
    assert entry.status == "broken"
    assert reason in entry.reason
    with pytest.raises(PluginError, match=case):
        registry.get_gate(case)
    report = ln.check_plugin(case)
    assert not report.ok and reason in report.checks[0].detail
    assert registry.get_gate("lstm").status == "ok"


def test_activation_missing_its_derivative_is_broken(fake):
    fake.module("lnt_half_act", """
        from lstm_numba.contract import Activation, pointwise
        @pointwise
        def forward(x, alpha, beta):
            return x
        activation = Activation(forward, None)
    """)
    fake.distribution("half-act", "1.0", activations={"half": "lnt_half_act:activation"})
    report = ln.check_plugin("half")
    assert report.kind == "activation" and not report.ok
    assert "has no 'derivative' function" in report.checks[0].detail
    with pytest.raises(PluginError, match="half"):
        ln.LSTM(2, 2, activation="half")


# --------------------------------------------------------------------------- wrong plugins


def test_check_plugin_passes_a_correct_third_party_activation(fake):
    fake.module("lnt_good_act", GOOD_ACTIVATION)
    fake.distribution("good-acts", "1.0", activations={"good_softsign": "lnt_good_act:activation"})
    report = ln.check_plugin("good_softsign")
    assert report.ok, str(report)
    assert (report.kind, report.distribution, report.version) == ("activation", "good-acts", "1.0")


def test_check_plugin_fails_a_wrong_activation_derivative(fake):
    fake.module("lnt_wrong_act", WRONG_ACTIVATION)
    fake.distribution("wrong-acts", "1.0", activations={"wrong_softsign": "lnt_wrong_act:activation"})
    report = ln.check_plugin("wrong_softsign", kind="activation")
    assert not report.ok
    assert [c.name for c in report.failed] == ["derivative"]
    assert "finite difference" in report.failed[0].detail


def test_check_plugin_fails_a_float64_promoting_activation(fake):
    fake.module("lnt_promoting_act", """
        from lstm_numba.contract import Activation, pointwise
        @pointwise
        def forward(x, alpha, beta):
            return 0.5 * x
        @pointwise
        def derivative(x, y, alpha, beta):
            return 0.5 + 0.0 * x
        activation = Activation(forward, derivative)
    """)
    fake.distribution("promoting-acts", "1.0", activations={"half_x": "lnt_promoting_act:activation"})
    report = ln.check_plugin("half_x")
    assert not report.ok
    assert [c.name for c in report.failed] == ["compile float32"]
    assert "returns float64 for float32 input" in report.failed[0].detail


def test_check_plugin_reports_a_wrong_gate_backward(fake):
    """Compiles this gate's kernels once (then they are in the disk cache)."""
    fake.module("lnt_sloppy_gate", SLOPPY_GATE)
    fake.distribution("sloppy-gates", "0.0.1", gates={"sloppy": "lnt_sloppy_gate:gate"})
    report = ln.check_plugin("sloppy")
    assert not report.ok
    assert (report.kind, report.distribution, report.version) == ("gate", "sloppy-gates", "0.0.1")
    failed = {c.name: c.detail for c in report.failed}
    assert "gradient" in failed and "gradient with clip" in failed
    assert "finite difference" in failed["gradient"]
    assert "ds_prev values unwritten" in failed["writes"]
    assert "must add to dp" in failed["writes"]
    assert "float to double" in failed["float32 step"]
    assert report.checks[0].name == "load" and report.checks[0].ok
    text = str(report)
    assert text.splitlines()[0].startswith("gate 'sloppy' from sloppy-gates 0.0.1") and "FAILED" in text


def _step_check(check, gate_name):
    """Run one of check_plugin's step-level checks alone (compiles the float64 step only)."""
    entry = registry.get_gate(gate_name)
    return check(gate_checks._gate_kernels(entry, "float64"), entry.obj)


def test_check_plugin_catches_a_false_elementwise_claim(fake):
    fake.module("lnt_mixing_gate", MIXING_GATE)
    fake.distribution("mixing-gates", "0.0.1", gates={"mixing": "lnt_mixing_gate:gate"})
    ok, detail = _step_check(gate_checks._check_gate_elementwise, "mixing")
    assert not ok and "s_next" in detail and "set elementwise=False" in detail
    assert _step_check(gate_checks._check_gate_gradient, "mixing")[0]  # the gate itself is right
    fake.module("lnt_mixing_gate_honest", MIXING_GATE.replace(", elementwise=True", ""))
    fake.distribution("mixing-gates-honest", "0.0.1", gates={"mixing_honest": "lnt_mixing_gate_honest:gate"})
    ok, detail = _step_check(gate_checks._check_gate_elementwise, "mixing_honest")
    assert ok and "not declared" in detail


def test_only_an_additive_gate_may_leave_dgh_unwritten(fake):
    """The built-in lstm leaves dgh to the engine (it equals dgx): its checks take dgx for
    it. The same code declared non-additive leaves a gradient the engine needs unwritten."""
    lstm = Path(lstm_numba_plugins.gates.lstm.__file__).read_text()
    assert "dhi[j]" not in lstm and "additive=True" in lstm
    for check in (gate_checks._check_gate_writes, gate_checks._check_gate_gradient, gate_checks._check_gate_additive,
                  gate_checks._check_gate_elementwise):
        ok, detail = _step_check(check, "lstm")
        assert ok, (check.__name__, detail)
    assert "dgh left as dgx" in _step_check(gate_checks._check_gate_writes, "lstm")[1]
    fake.module("lnt_lstm_not_additive", lstm.replace("additive=True", "additive=False"))
    fake.distribution("lstm-not-additive", "0.0.1", gates={"lstm_not_additive": "lnt_lstm_not_additive:gate"})
    ok, detail = _step_check(gate_checks._check_gate_writes, "lstm_not_additive")
    assert not ok and "dgh values unwritten" in detail


def test_check_plugin_catches_a_false_additive_claim(fake):
    """The GRU multiplies gh by its reset gate: declared additive, the additive check fails."""
    gru = Path(lstm_numba_plugins.gates.gru.__file__).read_text()
    assert "elementwise=True," in gru
    fake.module("lnt_gru_additive", gru.replace("elementwise=True,", "elementwise=True, additive=True,"))
    fake.distribution("additive-gru", "0.0.1", gates={"gru_additive": "lnt_gru_additive:gate"})
    ok, detail = _step_check(gate_checks._check_gate_additive, "gru_additive")
    assert not ok and "changes when gh is folded into gx" in detail and "dgx differs from dgh" in detail
    assert _step_check(gate_checks._check_gate_elementwise, "gru_additive")[0]


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize("order", [1, -1])
def test_duplicate_names_alphabetical_distribution_wins(fake, monkeypatch, order):
    fake.module("lnt_dup_a", GOOD_ACTIVATION)
    fake.module("lnt_dup_z", GOOD_ACTIVATION.replace("activation = Activation(forward, derivative)",
                                                     "activation = Activation(forward, derivative, alpha=7.0)"))
    fake.distribution("Zeta-Acts", "1.0", activations={"dup": "lnt_dup_z:activation"})
    fake.distribution("alpha-acts", "2.0", activations={"dup": "lnt_dup_a:activation"})
    served = fake.entry_points
    monkeypatch.setattr(fake, "entry_points", lambda group: served(group)[::order])

    winner = registry.get_activation("dup")
    assert (winner.distribution, winner.status, winner.obj.alpha) == ("alpha-acts", "ok", 0.0)
    listed = [e for e in ln.plugins("activation") if e.name == "dup"]
    assert [(e.distribution, e.status) for e in listed] == [("alpha-acts", "ok"), ("Zeta-Acts", "shadowed")]
    assert listed[1].reason == "shadowed by alpha-acts"

    loser = registry.get_activation("Zeta-Acts:dup")        # reachable by its qualified name
    assert loser.distribution == "Zeta-Acts" and loser.obj.alpha == 7.0
    report = ln.check_plugin("Zeta-Acts:dup")
    assert report.ok, str(report)
    assert report.distribution == "Zeta-Acts" and report.status == "shadowed"
    with pytest.raises(PluginError, match="unknown activation 'nobody:dup'"):
        registry.get_activation("nobody:dup")


def test_builtin_distribution_wins_a_duplicate_name(fake):
    fake.module("lnt_fake_tanh", GOOD_ACTIVATION)
    fake.module("lnt_fake_lstm", SLOPPY_GATE)
    fake.distribution("aaa-first-alphabetically", "9.9", gates={"lstm": "lnt_fake_lstm:gate"},
                      activations={"tanh": "lnt_fake_tanh:activation"})
    assert registry.get_gate("lstm").distribution == "lstm-numba"
    assert registry.get_activation("tanh").distribution == "lstm-numba"
    shadowed = [e for e in ln.plugins() if e.distribution == "aaa-first-alphabetically"]
    assert {(e.kind, e.name, e.status) for e in shadowed} == {("gate", "lstm", "shadowed"),
                                                             ("activation", "tanh", "shadowed")}
    assert all(e.reason == "shadowed by lstm-numba" for e in shadowed)
    assert registry.get_gate("aaa-first-alphabetically:lstm").obj.n_blocks == 1
    rnn = ln.LSTM(2, 3, dtype="float64", seed=0)                # the built-in lstm, 4 blocks
    assert rnn.params["weight_ih_l0"].shape == (12, 2)


def test_broken_winner_still_wins_and_the_loser_stays_reachable(fake):
    """The rule is by distribution name, not by health: choosing the broken winner raises,
    naming it, and the working one stays reachable by its qualified name."""
    fake.module("lnt_dup_ok", GOOD_ACTIVATION)
    fake.module("lnt_dup_broken", "import no_such_module_anywhere\n")
    fake.distribution("aaa-broken", "1.0", activations={"dup2": "lnt_dup_broken:activation"})
    fake.distribution("bbb-works", "1.0", activations={"dup2": "lnt_dup_ok:activation"})
    with pytest.raises(PluginError, match=r"'dup2' from distribution aaa-broken .*ModuleNotFoundError"):
        registry.get_activation("dup2")
    assert registry.get_activation("bbb-works:dup2").distribution == "bbb-works"


def test_two_distributions_with_the_same_target_keep_their_own_entries(fake):
    """Regression: the registry cached entries by (kind, name, target), so the second
    distribution got the first one's entry and its qualified name did not resolve."""
    fake.module("lnt_shared_act", GOOD_ACTIVATION)
    fake.distribution("first-dist", "1.0", activations={"shared": "lnt_shared_act:activation"})
    fake.distribution("second-dist", "2.0", activations={"shared": "lnt_shared_act:activation"})
    listed = [(e.distribution, e.version, e.status) for e in ln.plugins("activation") if e.name == "shared"]
    assert listed == [("first-dist", "1.0", "ok"), ("second-dist", "2.0", "shadowed")]
    assert registry.get_activation("second-dist:shared").version == "2.0"
