"""The engine's choices that must not change results: the tiling of the time loops and the
arrays reused between calls. Parity under each tiling is in the torch and reference tests
(their ``tiling`` fixture); these check the choices themselves."""

import numpy as np
import pytest

import lstm_numba as ln
from lstm_numba.engine import blas_control, layout, tiling


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n):
        monkeypatch.setattr(tiling.numba.config, "NUMBA_DEFAULT_NUM_THREADS", n)
    return set_cores


def test_elementwise_gates_split_large_layers_into_one_part_per_core(cores):
    cores(2)
    tile = tiling.choose_tiling(True, True, 64, 128, 256, 1024, 4)
    assert (tile.parts, tile.chunks, tile.backward_blocks[0]) == (2, 1, 64)  # the whole batch per tile
    cores(8)
    assert tiling.choose_tiling(True, True, 64, 128, 256, 1024, 4).parts == 8
    assert tiling.choose_tiling(True, True, 512, 16, 48, 192, 4).parts == 2      # 4 parts would be 12 units wide
    assert tiling.choose_tiling(True, True, 32, 16, 256, 1024, 4).parts == 4     # 8 parts would be 2 MFLOP each
    assert tiling.choose_tiling(True, True, 1000, 16, 256, 1024, 4).forward_blocks[0] == 256
    assert tiling.choose_tiling(True, True, 1000, 16, 256, 1024, 4).chunks == 4  # 1000 rows in blocks of 256


def test_fused_input_projection_where_the_small_matrix_kernel_runs_it(cores, monkeypatch):
    cores(2)
    monkeypatch.setattr(blas_control, "small_kernel_available", lambda: True)
    medium = tiling.choose_tiling(True, True, 64, 128, 256, 1024, 4)  # 2 parts, depth 385
    assert medium.fused_input and medium.forward_blocks == (32, 64, 385)
    small = tiling.choose_tiling(True, True, 32, 32, 64, 256, 4)       # 16-row chunks, one call per step
    assert small.fused_input and small.forward_blocks == (16, 256, 97)
    assert not tiling.choose_tiling(True, True, 128, 256, 512, 2048, 4).fused_input   # large: 128-row blocks
    assert not tiling.choose_tiling(True, True, 64, 128, 256, 1024, 8).fused_input    # float64: 1.5 MiB of weights
    assert not tiling.choose_tiling(True, False, 64, 128, 256, 768, 4).fused_input    # GRU: not additive
    monkeypatch.setattr(blas_control, "small_kernel_available", lambda: False)
    assert not tiling.choose_tiling(True, True, 64, 128, 256, 1024, 4).fused_input   # Haswell kernels


def test_no_split_for_other_gates_small_layers_or_one_core(cores):
    cores(2)
    assert tiling.choose_tiling(False, False, 64, 16, 256, 1024, 4).parts == 1    # layer norm mixes units
    assert tiling.choose_tiling(True, True, 32, 32, 64, 256, 4).parts == 1       # the small benchmark: barriers cost more
    assert tiling.choose_tiling(True, True, 64, 16, 255, 1020, 4).parts == 1     # odd H
    cores(1)
    assert tiling.choose_tiling(True, True, 64, 128, 256, 1024, 4).parts == 1


def test_tiling_ignores_the_thread_count(cores, monkeypatch):
    cores(2)
    choices = set()
    for threads in (1, 2):
        monkeypatch.setattr(tiling.numba, "get_num_threads", lambda: threads)
        choices.add(tiling.choose_tiling(True, True, 64, 128, 256, 1024, 4))
    assert len(choices) == 1


def test_part_major_is_a_permutation_that_groups_each_part():
    index = layout.part_major(3, 4, 2)  # blocks a, b, c of 4 units, 2 parts
    assert sorted(index) == list(range(12))
    assert index.tolist() == [0, 1, 4, 5, 8, 9, 2, 3, 6, 7, 10, 11]
    assert layout.part_major(3, 4, 1).tolist() == list(range(12))


def test_direction_weights_round_trip():
    rng = np.random.default_rng(0)
    hidden, n_gates, inputs = 8, 32, 3
    w_ih, w_hh = rng.standard_normal((n_gates, inputs)), rng.standard_normal((n_gates, hidden))
    b_ih, b_hh = rng.standard_normal(n_gates), rng.standard_normal(n_gates)
    for fused, additive in ((False, True), (False, False), (True, True)):
        tile = tiling.Tiling(parts=4, chunks=1, forward_blocks=(8, 8, 8), backward_blocks=(8, 2, 32), fused_input=fused)
        weights = layout.DirectionWeights.prepare(tile, hidden, w_ih, w_hh, b_ih, b_hh, rng.standard_normal(3 * hidden),
                                                  additive=additive)
        np.testing.assert_array_equal(weights.w_hh, w_hh)
        hidden_parts = weights.hidden_parts_of_w_hh()  # (U, G, W): part u's columns, rows part-major
        np.testing.assert_array_equal(weights.to_natural(np.hstack(list(hidden_parts))), w_hh)
        np.testing.assert_array_equal(weights.to_natural(weights.w_ih), w_ih)
        bias = b_ih + b_hh if additive else b_ih
        if fused:  # each part's columns of [W_ih^T; bias; W_hh^T]
            assert weights.w_proj is None and weights.w_rec.shape == (4, inputs + 1 + hidden, n_gates // 4)
            expected = np.hstack([w_ih, bias[:, None], w_hh])
        else:
            projection = weights.to_natural(weights.w_proj.T)  # [W_ih, bias]
            np.testing.assert_array_equal(projection, np.hstack([w_ih, bias[:, None]]))
            assert weights.w_rec.shape == (4, hidden, n_gates // 4)
            expected = w_hh
        np.testing.assert_array_equal(weights.to_natural(np.hstack(list(weights.w_rec)).T), expected)
    state = rng.standard_normal((2, 5, hidden))
    np.testing.assert_array_equal(weights.state_from_kernel(weights.state_to_kernel(state), 2), state)


@pytest.mark.parametrize("parts", [1, 2])
def test_weights_that_gemm_kernels_read_unpacked_start_on_a_cache_line(parts):
    """The small-matrix kernel reads the recurrent weights and W_ih (the input gradient's
    weights) as they lie; NumPy's own arrays start 16 bytes past a line, which measured the
    input gradient at 4.7 against 3.7 ms (medium)."""
    rng = np.random.default_rng(0)
    w_ih = rng.standard_normal((40, 7))[:, 1:]  # not contiguous, so never a view that happens to be aligned
    for fused in (False, True):
        tile = tiling.Tiling(parts=parts, chunks=1, forward_blocks=(8, 8, 8), backward_blocks=(8, 2, 32),
                             fused_input=fused)
        weights = layout.DirectionWeights.prepare(tile, 10, w_ih, rng.standard_normal((40, 10)), rng.standard_normal(40),
                                                  rng.standard_normal(40), np.zeros(0), additive=True)
        for name in ("w_ih", "w_rec") if fused else ("w_ih", "w_proj", "w_rec"):
            array = getattr(weights, name)
            assert array.flags.c_contiguous and array.ctypes.data % layout.ALIGNMENT == 0, (name, fused)
        assert weights.hidden_parts_of_w_hh().ctypes.data % layout.ALIGNMENT == 0


def test_layers_keep_their_weights_on_a_cache_line_and_read_them_in_place(rng):
    """With one hidden part the kernels read W_ih and W_hh where they lie when the
    parameters are aligned (as a layer allocates them), and an unaligned replacement
    array is copied and gives the same results."""
    rnn = ln.LSTM(3, 8, seed=0)
    for key, value in rnn.params.items():
        assert value.ctypes.data % layout.ALIGNMENT == 0, key
    w_ih, w_hh = rnn.params["weight_ih_l0"], rnn.params["weight_hh_l0"]
    tile = tiling.Tiling(parts=1, chunks=1, forward_blocks=(8, 8, 8), backward_blocks=(8, 8, 32))
    weights = layout.DirectionWeights.prepare(tile, 8, w_ih, w_hh, np.zeros(32), np.zeros(32), np.zeros(0), True)
    assert weights.w_ih is w_ih and np.shares_memory(weights.hidden_parts_of_w_hh(), w_hh)
    x, dy = rng.standard_normal((6, 4, 3)), rng.standard_normal((6, 4, 8))
    y, _ = rnn(x)
    grads = rnn.backward(dy)
    for key in ("weight_ih_l0", "weight_hh_l0"):
        value = rnn.params[key]
        unaligned = np.empty(value.size + 1, value.dtype)[1:].reshape(value.shape)
        unaligned[...] = value
        rnn.params[key] = unaligned
    y_copied, _ = rnn(x)
    grads_copied = rnn.backward(dy)
    np.testing.assert_array_equal(y_copied, y)
    np.testing.assert_array_equal(grads_copied.x, grads.x)
    for key, value in grads.params.items():
        np.testing.assert_array_equal(grads_copied.params[key], value, err_msg=key)


def test_reused_arrays_never_leak_into_results(rng):
    """Outputs and gradients are fresh arrays; a smaller, an inference and a larger call in
    between leave a later forward/backward exactly as a fresh layer computes it."""
    rnn = ln.LSTM(3, 8, num_layers=2, bidirectional=True, seed=0)
    fresh = ln.LSTM(3, 8, num_layers=2, bidirectional=True, seed=0)
    x_long, x_short = rng.standard_normal((9, 4, 3)), rng.standard_normal((5, 4, 3))
    y_long, _ = rnn(x_long)
    kept = y_long.copy()
    g_long = rnn.backward(np.ones_like(y_long))
    kept_grad = g_long.params["weight_hh_l0"].copy()
    rnn(x_short, need_grad=False)
    y_short, (h, c) = rnn(x_short, lengths=[5, 2, 4, 1])
    g_short = rnn.backward(np.ones_like(y_short))
    np.testing.assert_array_equal(y_long, kept)
    np.testing.assert_array_equal(g_long.params["weight_hh_l0"], kept_grad)
    y_ref, (h_ref, c_ref) = fresh(x_short, lengths=[5, 2, 4, 1])
    g_ref = fresh.backward(np.ones_like(y_ref))
    np.testing.assert_array_equal(y_short, y_ref)
    np.testing.assert_array_equal(c, c_ref)
    for key, value in g_ref.params.items():
        np.testing.assert_array_equal(g_short.params[key], value)
    np.testing.assert_array_equal(g_short.x, g_ref.x)


def test_final_state_is_not_a_view_of_reused_arrays(rng):
    gru = ln.GRU(3, 4, seed=0)
    _, h_first = gru(rng.standard_normal((5, 2, 3)))
    kept = h_first.copy()
    gru(rng.standard_normal((5, 2, 3)))
    np.testing.assert_array_equal(h_first, kept)


@pytest.mark.parametrize("make", [ln.LSTM, ln.GRU])  # additive and not: one or two weight-gradient GEMMs
def test_weight_gradients_land_in_pytorch_order_on_both_paths_with_hidden_parts(rng, monkeypatch, make):
    """With hidden parts, the slab path puts the rows in place as it sums and the blocked path
    reorders afterwards; both give the plain tiling's gradients, as separate arrays."""
    from tilings import hidden_split_settings

    x = rng.standard_normal((7, 3, 5))
    dy = rng.standard_normal((7, 3, 8))

    def grads():
        rnn = make(5, 8, dtype="float64", seed=1)
        rnn(x)
        return rnn.backward(dy).params

    plain = grads()
    for target, name, value in hidden_split_settings():
        monkeypatch.setattr(target, name, value)
    for blocks in ((4, 5), None):
        monkeypatch.setattr(tiling, "weight_gradient_blocks", lambda n_gates, depth, small_kernel: blocks)
        split = grads()
        for key, value in plain.items():
            np.testing.assert_allclose(split[key], value, rtol=1e-12, atol=1e-12, err_msg=f"{key}, blocks {blocks}")
        assert not np.shares_memory(split["bias_ih_l0"], split["bias_hh_l0"])


@pytest.mark.parametrize("gate", ["lstm", pytest.param("peephole", marks=pytest.mark.slow)])
@pytest.mark.parametrize("split", [False, True], ids=["rows", "hidden-split"])
def test_fused_input_projection_gives_the_hoisted_projections_results(rng, monkeypatch, gate, split):
    """The forward step's GEMM over whole tape rows [x_s, 1, h_{s-1}] computes what the hoisted
    input projection and the recurrent GEMM after it do: outputs, final states and every
    gradient agree (float64, two layers, both directions, variable lengths), and an
    inference forward, whose pre-activations are one step of scratch, gives training's
    outputs bit for bit."""
    from tilings import hidden_split_settings

    if split:
        for target, name, value in hidden_split_settings():
            monkeypatch.setattr(target, name, value)
    x = rng.standard_normal((7, 3, 5))
    dy = rng.standard_normal((7, 3, 16))
    lengths = [7, 2, 5]

    def run(fused, blocks=None):
        monkeypatch.setattr(tiling, "fuses_input_projection", lambda *shape: fused)
        if blocks:  # blocks of 2 rows (a tile of 3 rows takes two) by 8 columns
            monkeypatch.setattr(tiling, "fused_step_blocks", lambda rows, cols, depth, *_: (2, min(cols, 8), depth))
        tile = tiling.choose_tiling(True, True, 3, 5, 8, 32, 8)
        assert tile.fused_input is fused and (tile.forward_blocks[0] == 2) == bool(blocks)
        rnn = ln.LSTM(5, 8, num_layers=2, bidirectional=True, gate=gate, dtype="float64", seed=3)
        y, state = rnn(x, lengths=lengths)
        grads = rnn.backward(dy)
        y_inference, state_inference = rnn(x, lengths=lengths, need_grad=False)
        np.testing.assert_array_equal(y_inference, y)
        np.testing.assert_array_equal(state_inference[1], state[1])
        return {"y": y, "h_n": state[0], "c_n": state[1], "dx": grads.x, "dh0": grads.state[0], **grads.params}

    hoisted = run(False)
    for fused in (run(True), run(True, blocks="2 x 8")):
        for key, value in hoisted.items():
            np.testing.assert_allclose(fused[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
