"""A plugin gate that fails to compile, or that produces NaN, is named in one line.

The fake plugins are real modules and distributions (``test_registry.FakePlugins``): an
Elman-style gate (``h = act(gx + gh)``) with a typing bug, and one that returns NaN once
its extra parameter ``trigger`` is set. The typing bug fails in Numba's type inference
(about 2 s); the NaN gate compiles its kernels once (cached on disk afterwards).
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from lstm_numba_cli.main import cli
from test_registry import FakePlugins
from train_helpers import write_series

import lstm_numba as ln
from lstm_numba.registry import REGISTRY
from lstm_numba.training.config import TrainConfig
from lstm_numba.training.tasks.common import TrainingError
from lstm_numba.training.trainer import Callbacks, Trainer, read_training_checkpoint

TYPO_GATE = """
    from lstm_numba.contract import Gate, pointwise, zero

    @pointwise
    def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
        for j in range(s_next.size):
            s_next[j] = act(gx[j] + gh[j])[0] + "oops"

    @pointwise
    def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
        for j in range(ds_next.size):
            y, d = act(gx[j] + gh[j])
            dgx[j] = ds_next[j] * d
            dgh[j] = dgx[j]
            ds_prev[j] = zero(d)

    gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward)
"""

# NaN (0/0) wherever the extra parameter `trigger` is >= 1; its gradient is left at 0, so
# training never moves it and only the test's callback sets it.
NAN_GATE = """
    from lstm_numba.contract import ExtraParam, Gate, one, pointwise, zero

    @pointwise
    def forward(gx, gh, s_prev, p, clip, act, ract, s_next):
        for j in range(s_next.size):
            y = act(gx[j] + gh[j])[0]
            s_next[j] = y if p[j] < one(y) else y * (zero(y) / zero(y))

    @pointwise
    def backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp):
        for j in range(ds_next.size):
            y, d = act(gx[j] + gh[j])
            dgx[j] = ds_next[j] * d
            dgh[j] = dgx[j]
            ds_prev[j] = zero(d)

    gate = Gate(n_blocks=1, state_names=("h",), forward=forward, backward=backward,
                extra_params=(ExtraParam("trigger", blocks=1, init="zeros"),))
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    REGISTRY.clear()
    plugins = FakePlugins(tmp_path, monkeypatch)
    plugins.module("badinput_typo_gate", TYPO_GATE)
    plugins.module("badinput_nan_gate", NAN_GATE)
    plugins.distribution("fancy-gates", "2.1", gates={"typo": "badinput_typo_gate:gate",
                                                      "nangate": "badinput_nan_gate:gate"})
    yield plugins
    plugins.cleanup()
    REGISTRY.clear()


def test_a_gate_that_fails_to_compile_raises_one_line_naming_it(fake):
    rnn = ln.LSTM(2, 3, gate="typo", seed=0)
    with pytest.raises(ln.PluginError) as info:
        rnn(np.zeros((2, 1, 2), np.float32))
    message = str(info.value)
    assert "\n" not in message and len(message) < 500, message
    for fragment in ("gate plugin 'typo'", "distribution fancy-gates 2.1", "failed to compile for float32",
                     "badinput_typo_gate.py line 7", "No implementation of function", "add(float32"):
        assert fragment in message, (fragment, message)
    assert "oops" in info.value.compiler_message  # the whole complaint stays reachable
    assert isinstance(info.value, ValueError)


def test_train_with_a_gate_that_fails_to_compile_prints_one_short_line(fake, tmp_path):
    data = write_series(tmp_path / "s.csv", n=60)
    result = CliRunner().invoke(cli, ["train", data, "--gate", "typo", "--window", "6", "--horizon", "2",
                                      "--hidden-size", "3", "--epochs", "1", "--out", str(tmp_path / "t.npz")])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: gate plugin 'typo' from distribution fancy-gates"), lines
    assert len(lines[0]) < 500 and "internal error" not in lines[0]


def test_check_plugin_reports_the_compile_failure_in_one_short_line(fake):
    report = ln.check_plugin("typo")
    assert not report.ok
    failed = [c for c in report.checks if not c.ok]
    assert failed and all(len(c.detail) < 500 for c in failed)
    assert any("No implementation of function" in c.detail and "badinput_typo_gate.py line 7" in c.detail
               for c in failed)


class _TriggerAfterFirstEpoch(Callbacks):
    """Sets the NaN gate's trigger after epoch 1: epoch 2's first step diverges."""

    def epoch_end(self, trainer, record):
        trainer.model.params["rnn.trigger_l0"][...] = 1.0


def test_nan_from_a_plugin_gate_is_reported_as_divergence_naming_the_gate(fake, tmp_path):
    data = write_series(tmp_path / "s.csv", n=60)
    out = tmp_path / "run.npz"
    trainer = Trainer(TrainConfig(data=data, gate="nangate", window=6, horizon=2, hidden_size=3, epochs=3,
                                  batch_size=64, seed=0))
    with pytest.raises(TrainingError) as info:
        trainer.fit(checkpoint=out, callbacks=_TriggerAfterFirstEpoch())
    message = str(info.value)
    assert "\n" not in message
    for fragment in ("training diverged at epoch 2, step 2", "the loss is nan",
                     "the gate 'nangate' (fancy-gates 2.1) produced NaN or Inf from finite inputs and weights",
                     f"the last good checkpoint {out} (epoch 1) is kept"):
        assert fragment in message, (fragment, message)
    assert "dy:" not in message
    kept = read_training_checkpoint(out)
    assert kept.meta["progress"]["epoch"] == 1 and np.isfinite(kept.params["rnn.weight_hh_l0"]).all()
