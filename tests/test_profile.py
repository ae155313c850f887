"""lstm_numba.profiling: flop counts, checkpoint config lookup, the kernel hook and the report."""

import json

import numpy as np
import pytest

import lstm_numba as ln
from lstm_numba.engine import hooks, tiling
from lstm_numba.profiling import flops, machine, phases, report, timing, torch_compare


def test_forward_flops_formula():
    # 2·T·B·4H·(I+H), the count.
    assert flops.forward_flops(100, 64, 128, 256) == 2 * 100 * 64 * 4 * 256 * (128 + 256)
    two = flops.forward_flops(10, 4, 3, 5, num_layers=2, num_directions=2)
    assert two == 2 * (2 * 10 * 4 * 20 * (3 + 5)) + 2 * (2 * 10 * 4 * 20 * (10 + 5))


@pytest.mark.parametrize("gate, blocks", [("lstm", 4), ("gru", 3), ("coupled", 3), ("peephole", 4), ("slstm", 4)])
def test_model_flops_from_params(gate, blocks):
    model = ln.LSTM(3, 5, num_layers=2, bidirectional=True, gate=gate)
    inp, rec = flops.model_flops(model, 7, 2)
    assert inp + rec == flops.forward_flops(7, 2, 3, 5, blocks, 2, 2)
    assert rec == 4 * 2 * 7 * 2 * blocks * 5 * 5


def test_model_from_training_checkpoint(tmp_path):
    data = tmp_path / "s.csv"
    data.write_text("v\n" + "\n".join(str(np.cos(i / 4)) for i in range(40)) + "\n")
    path = tmp_path / "t.npz"
    trainer = ln.Trainer(ln.TrainConfig(data=str(data), window=12, horizon=2, hidden_size=6, gate="gru",
                                        epochs=1, batch_size=8, seed=3))
    trainer.fit(checkpoint=path)
    model, info = report.model_from_checkpoint(path)
    assert isinstance(model, ln.LSTM) and model.gate_name == "gru" and model.hidden_size == 6
    assert info == {"task": "forecast", "seq_len": 12, "batch_size": 8}
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, trainer.model.state_dict()["rnn." + key])


@pytest.mark.parametrize("warmup, warmup_s, untimed", [(1, 0.0, 1), (2, 0.0, 2), (1, 0.018, 4), (6, 0.018, 6)])
def test_time_calls_warms_up_by_count_and_by_time(monkeypatch, warmup, warmup_s, untimed):
    clock = [0.0]  # a fake clock: each call takes 5 ms
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    calls = []

    def five_ms():
        calls.append(clock[0])
        clock[0] += 0.005

    samples = timing.time_calls(five_ms, 3, warmup=warmup, warmup_s=warmup_s)
    assert samples == pytest.approx([0.005] * 3)
    assert len(calls) - 3 == untimed


def test_interleaved_samples_alternates_blocks_after_a_pause_and_a_warm_up(monkeypatch):
    clock = [0.0]  # a fake clock: each call takes 5 ms, a pause adds its seconds
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    events = []

    def sleep(seconds):
        events.append("pause")
        clock[0] += seconds

    monkeypatch.setattr(timing.time, "sleep", sleep)

    def impl(key):
        def call():
            events.append(key)
            clock[0] += 0.005
        return call

    samples = timing.interleaved_samples({"a": impl("a"), "b": impl("b"), "c": impl("c")}, rounds=3, calls=2,
                                       pause_s=1.0, warmup_s=0.012)
    assert {k: len(v) for k, v in samples.items()} == {"a": 6, "b": 6, "c": 6}
    assert all(s == pytest.approx(0.005) for v in samples.values() for s in v)
    # each block: a pause, 3 untimed calls (0, 5 and 10 ms into the 12 ms warm-up), 2 timed calls
    block = ["pause"] + ["{}"] * 5
    expected = [e.format(k) for k in "abc" + "cba" + "abc" for e in block]
    assert events == expected


def test_every_kernel_the_engine_reports_has_a_phase():
    assert set(hooks.KERNEL_NAMES) == set(phases.KERNEL_PHASES)


def test_engine_hook_reports_each_kernel_call_and_stops_after():
    model = ln.LSTM(2, 3, seed=0)
    x = np.ones((4, 2, 2), np.float32)
    seen = []
    with hooks.observe(lambda name, seconds: seen.append((name, seconds))):
        model.forward(x, need_grad=True)
        model.backward(np.ones((4, 2, 3), np.float32))
    names = [name for name, _ in seen]
    assert names[-1] == "input_gradient" and any(n.startswith("forward_") for n in names)
    assert any(n.startswith("backward_") for n in names) and all(s >= 0 for _, s in seen)
    assert set(names) <= set(hooks.KERNEL_NAMES)
    count = len(seen)
    model.forward(x)
    assert len(seen) == count  # no observer outside the block


@pytest.fixture(scope="module")
def tiny_result():
    model = ln.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True, seed=0)
    return report.profile(model, steps=4, batch=3, repeat=1, compile=False, torch=True)


def test_profile_result(tiny_result):
    r = tiny_result
    assert set(r["phases_ms"]) == set(phases.PHASES)
    assert r["phases_ms"]["forward_kernel"] > 0 and r["phases_ms"]["backward_kernel"] > 0
    assert r["notes"] == [] or all(isinstance(n, str) for n in r["notes"])
    json.dumps(r)  # JSON-able
    if r["torch"]["available"]:
        assert r["torch"]["module"] == "LSTM" and r["torch"]["max_abs_diff_forward"] < 1e-5


def test_torch_comparison_times_both_in_alternating_blocks(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(timing.time, "sleep", lambda seconds: None)
    real = timing.interleaved_samples
    calls = []

    def recording(fns, rounds, calls_per_block, pause_s, **kwargs):
        calls.append((sorted(fns), rounds, calls_per_block, pause_s))
        return real(fns, rounds, calls_per_block, pause_s, **kwargs)

    monkeypatch.setattr(torch_compare, "interleaved_samples", recording)
    model = ln.LSTM(3, 4, batch_first=True, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)  # time-major
    dy = np.ones((5, 2, 4), np.float32)
    out = torch_compare.profile_torch(model, x.transpose(1, 0, 2).copy(), dy.transpose(1, 0, 2).copy(), x, dy, repeat=3)
    # forward+backward, then inference
    assert calls == [(["ours", "torch"], 3, timing.COMPARE_CALLS, timing.COMPARE_PAUSE_S)] * 2
    assert out["max_abs_diff_forward"] < 1e-5  # the batch-first output compared in torch's time-major layout
    for mode in ("forward_backward", "inference"):
        assert out[f"ratio_{mode}"] == pytest.approx(out[f"{mode}_ms"] / out[f"ours_{mode}_ms"])


def test_phase_breakdown_sees_every_kernel_and_leaves_no_observer():
    model = ln.LSTM(2, 3)
    out = phases.phase_breakdown(model, np.zeros((2, 2, 2), np.float32), np.ones((2, 2, 3), np.float32), repeat=1)
    assert hooks._observer is None
    assert out["notes"] == []
    assert out["phases_ms"]["input_gemm"] > 0 or flops.fused_input_flops(model, 2, 2) > 0


@pytest.mark.parametrize("fused", [False, True])
def test_fused_input_projection_is_timed_and_counted_in_the_forward_kernel(monkeypatch, fused):
    """Where the engine fuses the input projection into the time loop, no input GEMM runs,
    its flops count in the forward kernel's, and the report says so instead of warning that
    a kernel went missing."""
    monkeypatch.setattr(tiling, "fuses_input_projection", lambda *shape: fused)
    assert flops.fused_input_flops(ln.GRU(3, 4, num_layers=2, seed=0), 5, 2) == 0  # not additive: never fused
    model = ln.LSTM(3, 4, num_layers=2, seed=0)
    inputs, _ = flops.model_flops(model, 5, 2)
    assert flops.fused_input_flops(model, 5, 2) == (inputs if fused else 0)
    out = report.profile(model, 5, 2, repeat=1, compile=False, torch=False)
    assert (out["phases_ms"]["input_gemm"] == 0) == fused
    assert not any("no kernel call" in note for note in out["notes"])
    assert any("inside the forward kernel" in note for note in out["notes"]) == fused
    counted = out["phase_gflops"]["forward_kernel"] * out["phases_ms"]["forward_kernel"] * 1e6
    recurrent = 2 * 2 * 5 * 2 * 16 * 4
    assert counted == pytest.approx(recurrent + (inputs if fused else 0), rel=1e-9)


def test_format_report(tiny_result):
    text = report.format_report(tiny_result)
    for label in phases.PHASE_LABELS.values():
        assert label in text
    assert "bidirectional" in text and "peak float32 matmul" in text


def test_blas_info_and_env():
    rows = machine.blas_info()
    assert all({"owner", "user_api", "internal_api", "num_threads"} <= set(r) for r in rows)
    assert set(machine.env_settings()) >= {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    assert machine.blas_peak_gflops(np.float32, 1, n=64, repeat=1) > 0
