"""The engine's step-GEMM microkernel (``engine.kernels.microkernel``) and the rule that
chooses it (``engine.tiling.step_kernel``): against NumPy's matmul, and the layer with the
microkernel forced on against the layer with it forced off (BLAS) and against torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lstm_numba.engine import tiling
from lstm_numba.engine.kernels import microkernel


# ---------------------------------------------------------------- cheap: pure Python / NumPy
def test_panels_hold_each_column_block_contiguous_along_k_and_zeros_past_n():
    width = microkernel.panel_columns(4)
    b = np.arange(3 * (2 * width + 5), dtype=np.float32).reshape(3, 2 * width + 5)
    packed = microkernel.pack_panels(b)
    assert packed.shape == (3, 3, width) and packed.flags.c_contiguous
    for panel in range(3):
        cols = b[:, panel * width:(panel + 1) * width]
        np.testing.assert_array_equal(packed[panel, :, :cols.shape[1]], cols)
    assert not packed[2, :, 5:].any()


def test_panels_of_stacked_parts_are_each_parts_panels():
    b = np.random.default_rng(0).standard_normal((2, 7, 19))
    packed = microkernel.pack_panels(b)
    for part in range(2):
        np.testing.assert_array_equal(packed[part], microkernel.pack_panels(b[part]))


@pytest.mark.parametrize("features, bits", [("+sse2,+avx2,+fma,+avx512f,+avx512bw", 512),
                                            ("+sse2,+avx2,+fma,-avx512f,-avx512bw", 256)])
def test_vector_width_follows_numba_cpu_features(monkeypatch, features, bits):
    monkeypatch.setattr(microkernel.numba_config, "CPU_FEATURES", features)
    assert 8 * microkernel.target_width_bytes() == bits


def test_rule_keeps_blas_for_the_deep_narrow_carry_only_where_blas_has_its_small_kernel(monkeypatch):
    monkeypatch.delenv(tiling.STEP_KERNEL_ENV, raising=False)
    assert tiling.step_kernel(32, 256, 512, small_kernel=True)[0]        # forward: H deep, G/U wide
    assert not tiling.step_kernel(32, 1024, 128, small_kernel=True)[0]   # backward carry
    assert tiling.step_kernel(32, 1024, 128, small_kernel=False)[0]


@pytest.mark.parametrize("value, micro", [("micro", True), ("blas", False), (" BLAS ", False)])
def test_environment_forces_the_step_kernel(monkeypatch, value, micro):
    monkeypatch.setenv(tiling.STEP_KERNEL_ENV, value)
    chosen, why = tiling.step_kernel(32, 1024, 128, small_kernel=True)
    assert chosen is micro and tiling.STEP_KERNEL_ENV in why


def test_a_bad_step_kernel_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv(tiling.STEP_KERNEL_ENV, "fast")
    with pytest.raises(ValueError, match="LSTM_NUMBA_STEP_KERNEL='fast'.*auto, micro, blas"):
        tiling.step_kernel(32, 64, 256, small_kernel=True)


def test_tiling_records_the_choice_and_no_choice_without_recurrent_weights(monkeypatch):
    monkeypatch.setenv(tiling.STEP_KERNEL_ENV, "micro")
    tile = tiling.choose_tiling(True, False, 32, 16, 64, 256, 4)
    assert tile.forward_micro and tile.backward_micro
    tile = tiling.choose_tiling(True, True, 32, 16, 64, 256, 4, recurrent=False)
    assert not tile.forward_micro and not tile.backward_micro
    monkeypatch.setenv(tiling.STEP_KERNEL_ENV, "blas")
    tile = tiling.choose_tiling(True, False, 32, 16, 64, 256, 4)
    assert not tile.forward_micro and not tile.backward_micro


# ---------------------------------------------------------------- slow: compiles kernels
@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, depth, cols, r0, r1", [
    (13, 37, 70, 0, 13),      # nothing a multiple of a tile
    (9, 300, 33, 3, 9),       # depth past one depth block; a row range inside the array
    (1, 1, 1, 0, 1),
    (24, 64, 256, 8, 24),
])
def test_packed_gemm_matches_numpy(dtype, rows, depth, cols, r0, r1):
    from numba import njit

    @njit
    def run(a, packed, c, r0, r1, accumulate):
        microkernel.packed_gemm(a, packed, c, r0, r1, accumulate)

    rng = np.random.default_rng(rows + depth + cols)
    wide = rng.standard_normal((rows, depth + 5)).astype(dtype)
    a = wide[:, 5:]  # a row stride wider than the row
    b = rng.standard_normal((depth, cols)).astype(dtype)
    start = rng.standard_normal((rows, cols + 3)).astype(dtype)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    tol = dict(rtol=1e-5, atol=1e-5 * np.sqrt(depth)) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for accumulate in (False, True):
        out = start.copy()
        c = out[:, :cols]
        run(a, microkernel.pack_panels(b), c, r0, r1, accumulate)
        want = expected[r0:r1] + (start[r0:r1, :cols] if accumulate else 0)
        np.testing.assert_allclose(c[r0:r1], want, **tol)
        np.testing.assert_array_equal(out[:r0], start[:r0])       # rows outside [r0, r1) untouched
        np.testing.assert_array_equal(out[r1:], start[r1:])
        np.testing.assert_array_equal(out[:, cols:], start[:, cols:])  # columns past N untouched


def _layer_run(monkeypatch, choice, dtype, bidirectional, hidden, batch, seed=0):
    import lstm_numba as ln

    monkeypatch.setenv(tiling.STEP_KERNEL_ENV, choice)
    rnn = ln.LSTM(6, hidden, dtype=dtype, bidirectional=bidirectional, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((7, batch, 6)).astype(dtype)
    lengths = rng.integers(1, 8, size=batch)
    lengths[0] = 7
    y, (h, c) = rnn.forward(x, lengths=lengths, need_grad=True)
    dy = rng.standard_normal(y.shape).astype(dtype)
    grads = rnn.backward(dy)
    return rnn, x, lengths, dy, {"y": y, "h": h, "c": c, "dx": grads.x, **grads.params}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_layer_with_microkernel_matches_blas_and_torch(monkeypatch, dtype, bidirectional):
    """Odd H and B (not multiples of a tile), padded rows, both directions."""
    torch = pytest.importorskip("torch")
    hidden, batch = 37, 11
    rnn, x, lengths, dy, micro = _layer_run(monkeypatch, "micro", dtype, bidirectional, hidden, batch)
    assert rnn  # the same weights (seed) with BLAS:
    _, _, _, _, blas = _layer_run(monkeypatch, "blas", dtype, bidirectional, hidden, batch)
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
    for key in micro:
        np.testing.assert_allclose(micro[key], blas[key], err_msg=key, **tol)
    # torch, as the independent reference (packed sequences give the lengths)
    tdtype = torch.float32 if dtype == "float32" else torch.float64
    ref = torch.nn.LSTM(6, hidden, bidirectional=bidirectional).to(tdtype)
    with torch.no_grad():
        for key, value in rnn.state_dict().items():
            getattr(ref, key).copy_(torch.from_numpy(value))
    tx = torch.from_numpy(x).requires_grad_(True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths), enforce_sorted=False)
    ty, _ = ref(packed)
    ty, _ = torch.nn.utils.rnn.pad_packed_sequence(ty, total_length=x.shape[0])
    ty.backward(torch.from_numpy(dy) * (torch.arange(7)[:, None] < torch.from_numpy(lengths)[None]).unsqueeze(-1))
    ref_tol = dict(rtol=1e-4, atol=1e-5) if dtype == "float32" else dict(rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(micro["y"], ty.detach().numpy(), **ref_tol)
    np.testing.assert_allclose(micro["dx"], tx.grad.numpy(), **ref_tol)
    np.testing.assert_allclose(micro["weight_hh_l0"], ref.weight_hh_l0.grad.numpy(), **ref_tol)


THREADS_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, lstm_numba as ln, numba
    from lstm_numba.engine import tiling
    rnn = ln.LSTM(16, 96, dtype="float32", seed=3)
    x = np.random.default_rng(4).standard_normal((9, 21, 16)).astype(np.float32)
    lengths = np.array([9, 3, 8] * 7)
    y, (h, c) = rnn.forward(x, lengths=lengths, need_grad=True)
    g = rnn.backward(np.ones_like(y))
    np.savez(sys.argv[1], y=y, c=c, dx=g.x, **g.params)
    tile = tiling.choose_tiling(True, False, 21, 16, 96, 384, 4)
    print(numba.get_num_threads(), tile.forward_micro, tile.backward_micro)
""")


@pytest.mark.slow
def test_microkernel_results_are_bitwise_identical_across_thread_counts(tmp_path):
    results = {}
    for threads in ("1", "2", "3"):
        out = tmp_path / f"run{threads}.npz"
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, LSTM_NUMBA_ADAPTIVE_THREADS="0",
                   LSTM_NUMBA_STEP_KERNEL="micro", LSTM_NUMBA_CACHE_DIR=str(tmp_path / "kernels"))
        proc = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, str(out)], env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == [threads, "True", "True"]
        results[threads] = dict(np.load(out))
    for threads in ("2", "3"):
        for key, value in results["1"].items():
            assert np.array_equal(value, results[threads][key]), (threads, key)
