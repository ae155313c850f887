"""The example third-party distribution ``plugins/example_elman`` (``lstm-numba-elman``, gate
``elman_rnn``, the Elman RNN cell; not named ``elman``, the plugin guide's copy that
test_plugins_docs registers), installed for real with pip into the running environment, and
checked against ``torch.nn.RNN`` and float64 finite differences.

The install copies the source to a temporary directory first (so no ``build/`` or
``*.egg-info`` lands in the repository), runs offline (``--no-index``, ``--no-deps``,
``--no-build-isolation``: the environment's setuptools builds it) and is idempotent: a
second run reinstalls the same version. The package is uninstalled again at the end unless
it was installed before the tests started.

Building a wheel offline needs setuptools >= 70.1 or the ``wheel`` package in the
environment; the ``test`` extra installs both. Without them the test falls back to pip's
isolated build, which downloads setuptools (so it needs the index), and fails, saying
why, when that fails too.
"""

from __future__ import annotations

import ast
import importlib
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from conftest import max_rel_err

import lstm_numba as ln
from lstm_numba.registry import REGISTRY

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "example_elman"
DIST, PACKAGE, GATE = "lstm-numba-elman", "lstm_numba_elman", "elman_rnn"


def _pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, timeout=600)


def _version(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _installed_version():
    return _version(DIST)


def _can_build_offline() -> bool:
    """setuptools builds wheels by itself from 70.1; older ones need the wheel package."""
    version = _version("setuptools")
    if version is None:
        return False
    major_minor = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    return major_minor >= (70, 1) or _version("wheel") is not None


def _forget_module():
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if _pip("--version").returncode != 0:
        pytest.skip("pip is not available in this environment")
    was_installed = _installed_version() is not None
    source = tmp_path_factory.mktemp("dist") / "example_elman"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    if _can_build_offline():
        result = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
        assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    else:
        result = _pip("install", "--no-deps", str(source))
        assert result.returncode == 0, (
            f"cannot build {DIST}: setuptools {_version('setuptools')} without the wheel package cannot build "
            f"offline (the test extra installs both), and pip's isolated build failed: {result.stderr[-300:]}")
    _forget_module()
    REGISTRY.clear()
    yield
    REGISTRY.clear()
    if not was_installed:
        _pip("uninstall", "--yes", DIST)
        _forget_module()


def test_example_imports_only_the_contract_from_the_engine():
    for path in (EXAMPLE / PACKAGE).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            engine = [m for m in modules if m.split(".")[0] in ("lstm_numba", "lstm_numba_plugins")]
            assert all(m == "lstm_numba.contract" for m in engine), f"{path.name} imports {engine}"


def test_found_through_its_entry_point(installed):
    assert _installed_version() == "0.1.0"
    (entry,) = [e for e in ln.plugins("gate") if e.name == GATE]
    assert (entry.distribution, entry.version, entry.status) == (DIST, "0.1.0", "ok")
    assert entry.target == f"{PACKAGE}.gate:gate"
    assert Path(sys.modules[f"{PACKAGE}.gate"].__file__).resolve().parent != (EXAMPLE / PACKAGE).resolve()
    rnn = ln.LSTM(3, 4, gate=GATE)
    assert rnn.plugins["gate"] == {"name": GATE, "distribution": DIST, "version": "0.1.0"}
    assert list(rnn.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert rnn.state_names == ("h",)


def test_check_plugin_passes(installed):
    report = ln.check_plugin(GATE)
    assert report.ok, str(report)
    assert (report.kind, report.distribution, report.version) == ("gate", DIST, "0.1.0")


def _reference(params, x, h0, clip):
    """The Elman equations, one layer, forward direction, plain NumPy."""
    h, ys = h0, []
    for t in range(x.shape[0]):
        z = x[t] @ params["weight_ih_l0"].T + params["bias_ih_l0"] + h @ params["weight_hh_l0"].T + params["bias_hh_l0"]
        h = np.tanh(np.clip(z, -clip, clip))
        ys.append(h)
    return np.stack(ys), h


@pytest.mark.parametrize("clip", [None, 0.7])
def test_matches_the_elman_equations(installed, clip):
    rnn = ln.LSTM(3, 5, dtype="float64", seed=0, gate=GATE, clip=clip)
    rng = np.random.default_rng(1)
    x, h0 = rng.normal(size=(6, 2, 3)), rng.normal(size=(1, 2, 5))
    y, h_n = rnn(x, h0)
    y_ref, h_ref = _reference(rnn.state_dict(), x, h0[0], np.inf if clip is None else clip)
    assert max_rel_err(y, y_ref) < 1e-12 and max_rel_err(h_n[0], h_ref) < 1e-12
    if clip is not None:
        assert max_rel_err(ln.LSTM(3, 5, dtype="float64", seed=0, gate=GATE)(x, h0)[0], y) > 1e-3


def test_matches_torch_rnn(installed):
    """torch.nn.RNN (tanh) with the same weights: 2 layers, bidirectional, lengths through
    packed sequences; outputs, h_n and every gradient."""
    torch = pytest.importorskip("torch")
    rnn = ln.LSTM(3, 4, num_layers=2, bidirectional=True, dtype="float64", seed=0, gate=GATE)
    ref = torch.nn.RNN(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.state_dict().items()})
    rng = np.random.default_rng(3)
    lengths = np.array([5, 2, 4])
    x, h0 = rng.normal(size=(5, 3, 3)), rng.normal(size=(4, 3, 4))
    wy, wh = rng.normal(size=(5, 3, 8)), rng.normal(size=(4, 3, 4))
    y, h_n = rnn(x, h0, lengths=lengths)
    g = rnn.backward(wy, wh)
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
    out, h_t = ref(packed, h0t)
    y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=5)
    (torch.sum(torch.tensor(wy) * y_t) + torch.sum(torch.tensor(wh) * h_t)).backward()
    assert max_rel_err(y, y_t.detach().numpy()) < 1e-12 and max_rel_err(h_n, h_t.detach().numpy()) < 1e-12
    assert max_rel_err(g.x, xt.grad.numpy()) < 1e-12 and max_rel_err(g.state, h0t.grad.numpy()) < 1e-12
    for name, param in ref.named_parameters():
        assert max_rel_err(g.params[name], param.grad.numpy()) < 1e-12, name


@pytest.mark.parametrize("clip", [None, 0.5], ids=["noclip", "clip"])
def test_layer_gradients_match_finite_differences(installed, clip):
    from test_plugins_gates import _layer_fd

    worst = _layer_fd(GATE, clip)
    assert max(worst.values()) < 1e-6, worst


def test_trains_with_sgd(installed):
    rnn = ln.LSTM(3, 8, gate=GATE, dtype="float64", seed=0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 4, 3))
    target = np.sin(np.cumsum(x, axis=0))[..., :1] * np.ones((1, 1, 8))
    losses = []
    for _ in range(30):
        y, _ = rnn(x)
        diff = y - target
        losses.append(float(np.mean(diff ** 2)))
        grads = rnn.backward(2.0 * diff / diff.size)
        for key, value in rnn.params.items():
            value -= 0.5 * grads.params[key]
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(np.isfinite(losses))
