"""lstm_numba.profile: flop counts, checkpoint config lookup, the kernel hook and the report."""

import json

import numpy as np
import pytest

import lstm_numba as ln
from lstm_numba import profile as prof
from lstm_numba.checkpoint import save_checkpoint


def test_forward_flops_formula():
    # 2·T·B·4H·(I+H), the count.
    assert prof.forward_flops(100, 64, 128, 256) == 2 * 100 * 64 * 4 * 256 * (128 + 256)
    two = prof.forward_flops(10, 4, 3, 5, num_layers=2, num_directions=2)
    assert two == 2 * (2 * 10 * 4 * 20 * (3 + 5)) + 2 * (2 * 10 * 4 * 20 * (10 + 5))


@pytest.mark.parametrize("gate, blocks", [("lstm", 4), ("gru", 3), ("coupled", 3), ("peephole", 4)])
def test_model_flops_from_params(gate, blocks):
    model = ln.LSTM(3, 5, num_layers=2, bidirectional=True, gate=gate)
    inp, rec = prof.model_flops(model, 7, 2)
    assert inp + rec == prof.forward_flops(7, 2, 3, 5, blocks, 2, 2)
    assert rec == 4 * 2 * 7 * 2 * blocks * 5 * 5


CFG = {"input_size": 3, "hidden_size": 4, "gate": "lstm"}


@pytest.mark.parametrize("meta, where", [
    ({"model": {"rnn": CFG}}, "meta['model']['rnn']"),
    ({"config": {"rnn": CFG}}, "meta['config']['rnn']"),
    ({"config": CFG}, "meta['config']"),
    ({"deep": {"er": {"x": CFG}}}, "meta['deep']['er']['x']"),
])
def test_config_from_meta(meta, where):
    cfg, found = prof.config_from_meta(meta)
    assert cfg == CFG and found == where


def test_config_from_meta_missing():
    with pytest.raises(ValueError, match="no layer config"):
        prof.config_from_meta({"model": {"type": "x"}, "n": 3})


def test_model_from_generic_checkpoint(tmp_path):
    layer = ln.LSTM(3, 4, bidirectional=True, seed=1)
    path = tmp_path / "c.npz"
    meta = {"config": {"rnn": {**layer.config(), "future_option": 1}}, "train": {"bptt": 9, "batch_size": 5}}
    save_checkpoint(path, {f"net.rnn.{k}": v for k, v in layer.state_dict().items()}, meta)
    model, info = prof.model_from_checkpoint(path)
    assert info["params_loaded"] and info["prefix"] == "net.rnn."
    assert (info["seq_len"], info["batch_size"]) == (9, 5)
    assert any("future_option" in n for n in info["notes"])
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value)


def test_model_from_checkpoint_without_params(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"other": np.zeros(2)}, {"model": {"rnn": CFG}})
    model, info = prof.model_from_checkpoint(path)
    assert not info["params_loaded"] and model.hidden_size == 4
    assert any("random weights" in n for n in info["notes"])


def test_model_from_training_checkpoint(tmp_path):
    models = pytest.importorskip("lstm_numba.models")
    full = models.build_model({"type": "regressor", "input_size": 2, "output_size": 1, "hidden_size": 6,
                               "num_layers": 1, "gate": "gru", "seed": 3})
    path = tmp_path / "t.npz"
    meta = {"kind": "x", "model": full.config(), "train": {"window": 12, "batch_size": 8}}
    save_checkpoint(path, full.state_dict(), meta)
    model, info = prof.model_from_checkpoint(path)
    assert isinstance(model, ln.LSTM) and model.gate_name == "gru" and model.hidden_size == 6
    assert (info["seq_len"], info["batch_size"]) == (12, 8)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, full.state_dict()["rnn." + key])


def test_timed_kernels_passes_through():
    model = ln.LSTM(2, 3)
    totals = {}
    timed = prof._TimedKernels(model.kernels, totals)
    assert timed.step_forward is model.kernels.step_forward  # not a known phase: untouched
    assert callable(timed.forward_sequence) and timed.forward_sequence is not model.kernels.forward_sequence


@pytest.fixture(scope="module")
def tiny_result():
    model = ln.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=0)
    return prof.profile(model, steps=4, batch=3, repeat=1, compile=False, torch=True)


def test_profile_result(tiny_result):
    r = tiny_result
    assert set(r["phases_ms"]) == set(prof.PHASES)
    assert r["phases_ms"]["forward_kernel"] > 0 and r["phases_ms"]["backward_kernel"] > 0
    assert r["notes"] == [] or all(isinstance(n, str) for n in r["notes"])
    json.dumps(r)  # JSON-able
    if r["torch"]["available"]:
        assert r["torch"]["module"] == "LSTM" and r["torch"]["max_abs_diff_forward"] < 1e-5


def test_phases_hook_restores_kernels():
    model = ln.LSTM(2, 3)
    real = model.kernels
    out = prof.phase_breakdown(model, np.zeros((2, 2, 2), np.float32), np.ones((2, 2, 3), np.float32), repeat=1)
    assert model.kernels is real
    from lstm_numba import engine
    from lstm_numba.kernels import gemm
    assert engine.gemm is gemm
    assert out["notes"] == []
    assert out["phases_ms"]["input_gemm"] > 0


def test_format_report(tiny_result):
    text = prof.format_report(tiny_result)
    for label in prof.PHASE_LABELS.values():
        assert label in text
    assert "bidirectional" in text and "peak float32 matmul" in text


def test_blas_info_and_env():
    rows = prof.blas_info()
    assert all({"owner", "user_api", "internal_api", "num_threads"} <= set(r) for r in rows)
    assert set(prof.env_settings()) >= {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    assert prof.blas_peak_gflops(np.float32, 1, n=64, repeat=1) > 0
