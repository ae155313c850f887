"""The examples in docs/writing_plugins.md work as printed: the gate and the activation are
extracted from the Markdown, registered through (fake) entry points, pass
``ln.check_plugin``, and the gate computes an Elman RNN."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import max_rel_err
from test_registry import FakePlugins

import lstm_numba as ln
from lstm_numba.registry import REGISTRY

DOC = Path(__file__).resolve().parents[1] / "docs" / "writing_plugins.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def doc_plugins(tmp_path, monkeypatch):
    REGISTRY.clear()
    gate_src = next(b for b in _python_blocks() if "Gate(" in b)
    act_src = next(b for b in _python_blocks() if "Activation(" in b)
    fake = FakePlugins(tmp_path, monkeypatch)
    fake.module("lnt_doc_gates", gate_src)
    fake.module("lnt_doc_activations", act_src)
    fake.distribution("my-rnn-plugin", "0.1", gates={"elman": "lnt_doc_gates:elman"},
                      activations={"my_softsign": "lnt_doc_activations:softsign"})
    yield
    fake.cleanup()
    REGISTRY.clear()


def test_gate_example_is_under_30_lines():
    gate_src = next(b for b in _python_blocks() if "Gate(" in b)
    assert len(gate_src.strip().splitlines()) < 30


def test_doc_gate_passes_check_plugin(doc_plugins):
    report = ln.check_plugin("elman")
    assert report.ok, str(report)
    assert report.distribution == "my-rnn-plugin"


def test_doc_activation_passes_check_plugin(doc_plugins):
    report = ln.check_plugin("my_softsign")
    assert report.ok, str(report)


def test_doc_gate_is_an_elman_rnn(doc_plugins):
    rnn = ln.LSTM(3, 4, gate="elman", dtype="float64", seed=0, clip=0.8)
    x = np.random.default_rng(0).normal(size=(5, 2, 3))
    y, h_n = rnn(x)
    p = rnn.state_dict()
    h, ys = np.zeros((2, 4)), []
    for t in range(5):
        h = np.tanh(np.clip(x[t] @ p["weight_ih_l0"].T + p["bias_ih_l0"] + h @ p["weight_hh_l0"].T
                            + p["bias_hh_l0"], -0.8, 0.8))
        ys.append(h)
    assert max_rel_err(y, np.stack(ys)) < 1e-12
    assert max_rel_err(h_n[0], h) < 1e-12
