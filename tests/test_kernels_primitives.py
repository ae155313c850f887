"""The primitives of the time loops: the direct BLAS calls (``lstm_numba.engine.kernels.blas``)
against NumPy's matmul on the strided views, accumulations and blocks the loops use, the
unit-stride view (``lstm_numba.engine.kernels.views``) and the passes over whole arrays
(``lstm_numba.engine.kernels.arrays``)."""

import numpy as np
import pytest
from numba import njit

from lstm_numba.engine import blas_control, direction, tiling
from lstm_numba.engine.kernels import arrays, blas, gemm, views


@njit
def _blocked(a, b, c, r0, r1, block_rows, col_block, depth_block, beta):
    blas.blocked_gemm(a, b, c, r0, r1, block_rows, col_block, depth_block, beta)


@njit
def _gemm_tn(a, b, c, beta):
    blas.gemm_tn(a[:, 1:], b[:, 2:], c, beta)


@njit
def _gemm_into_columns(a, b, c, c0, beta):
    blas.gemm(a[:, 3:], b, c[:, c0:c0 + b.shape[1]], beta)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_on_strided_views_with_and_without_accumulation(rng, dtype, rtol, beta):
    a = rng.standard_normal((5, 10)).astype(dtype)        # uses a[:, 3:]: row stride 10
    b = rng.standard_normal((7, 6)).astype(dtype)
    c = rng.standard_normal((5, 20)).astype(dtype)
    before = c.copy()
    _gemm_into_columns(a, b, c, 8, beta)
    expected = a[:, 3:] @ b + beta * before[:, 8:14]
    np.testing.assert_allclose(c[:, 8:14], expected, rtol=rtol, atol=rtol)
    untouched = np.ones(20, bool)
    untouched[8:14] = False
    np.testing.assert_array_equal(c[:, untouched], before[:, untouched])


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("blocks", [(4, 3, 2), (8, 16, 16), (3, 5, 7)])
def test_blocked_gemm_covers_every_row_column_and_depth_block(rng, dtype, rtol, blocks):
    a = rng.standard_normal((11, 9)).astype(dtype)
    b = rng.standard_normal((9, 13)).astype(dtype)
    c = rng.standard_normal((11, 13)).astype(dtype)
    before = c.copy()
    block_rows, col_block, depth_block = blocks
    r1 = min(11, 2 * block_rows)  # rows [block_rows, r1): one tile's rows only
    _blocked(a, b, c, block_rows, r1, block_rows, col_block, depth_block, 1.0)
    np.testing.assert_allclose(c[block_rows:r1], before[block_rows:r1] + a[block_rows:r1] @ b, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(c[:block_rows], before[:block_rows])
    np.testing.assert_array_equal(c[r1:], before[r1:])
    _blocked(a, b, c, 0, 11, block_rows, col_block, depth_block, 0.0)
    np.testing.assert_allclose(c, a @ b, rtol=rtol, atol=rtol)


def test_gemm_blocks_split_only_where_the_small_kernel_was_measured_to_win():
    # medium benchmark, 2 parts: forward 64 x 256 @ 256 x 512, backward 64 x 1024 @ 1024 x 128
    assert tiling.gemm_blocks(64, 512, 256, 4, True) == (32, 256)
    assert tiling.gemm_blocks(64, 128, 1024, 4, True) == (32, 256)
    assert tiling.gemm_blocks(64, 512, 256, 4, False) == (512, 256)    # Haswell kernels: one call
    assert tiling.gemm_blocks(16, 256, 64, 4, True) == (256, 64)       # already small: one call
    assert tiling.gemm_blocks(128, 512, 256, 4, True) == (512, 256)    # 128-row blocks
    assert tiling.gemm_blocks(64, 512, 256, 8, True) == (32, 256)      # float64: 1 MiB of weights
    assert tiling.gemm_blocks(64, 1024, 256, 8, True) == (1024, 256)   # float64: 2 MiB of weights
    assert tiling.gemm_blocks(64, 512, 385, 4, True) == (32, 385)      # medium, fused input projection
    assert tiling.gemm_blocks(64, 1024, 512, 4, True) == (1024, 512)   # large: 2 MB of weights
    for rows, cols, depth in [(64, 512, 256), (64, 128, 1024), (40, 96, 700)]:
        col_block, depth_block = tiling.gemm_blocks(rows, cols, depth, 4, True)
        assert rows * col_block * depth_block <= tiling.SMALL_KERNEL_MAX_MNK


def test_hoisted_gemms_take_small_blocks_only_where_they_were_measured_to_win():
    # small benchmark: projection 1600 x 33 @ 33 x 256, dx 1600 x 256 @ 256 x 32
    assert tiling.hoisted_gemm_blocks(1600, 256, 33, 4, True) == (tiling.SMALL_ROW_BLOCK, 256, 33)
    assert tiling.hoisted_gemm_blocks(1600, 32, 256, 4, True) == (tiling.SMALL_ROW_BLOCK, 32, 256)
    assert tiling.hoisted_gemm_blocks(1600, 256, 33, 4, False) == (400, 256, 33)      # Haswell kernels: 4 blocks
    # medium: the projection 6400 x 129 @ 129 x 1024 is too wide for column blocks; dx 6400 x 1024 @
    # 1024 x 128 takes 32 columns by the whole depth, in blocks of the 30 rows that fit the kernel
    assert tiling.hoisted_gemm_blocks(6400, 1024, 129, 4, True) == (400, 1024, 129)
    assert tiling.hoisted_gemm_blocks(6400, 128, 1024, 4, True) == (30, 32, 1024)
    assert tiling.hoisted_gemm_blocks(6400, 128, 1024, 8, True) == (30, 32, 1024)     # float64: 1 MiB of weights
    assert tiling.hoisted_gemm_blocks(6400, 256, 1024, 8, True) == (400, 256, 1024)   # float64: 2 MiB
    assert tiling.hoisted_gemm_blocks(6400, 128, 1024, 4, False) == (400, 128, 1024)  # Haswell kernels
    assert tiling.hoisted_gemm_blocks(25600, 256, 2048, 4, True) == (464, 256, 2048)  # large: 2 MB of weights
    for shape in [(6400, 128, 1024), (6400, 40, 3000), (999, 64, 700)]:  # deep: split in columns, fitting the kernel
        rows, col_block, depth_block = tiling.hoisted_gemm_blocks(*shape, 4, True)
        assert col_block == tiling.SMALL_GEMM_COLUMNS and 16 <= rows <= tiling.SMALL_GEMM_MAX_ROWS
        assert rows * col_block * depth_block <= tiling.SMALL_KERNEL_MAX_MNK


def test_input_projection_tasks_are_whole_steps_whatever_the_length():
    # small (fused for the LSTM; GRU's 3H = 192 columns) and large, SkylakeX and Haswell kernels
    assert tiling.projection_blocks(32, 192, 33, 4, True) == tiling.ProjectionBlocks(1, (32, 192, 33))
    assert tiling.projection_blocks(32, 256, 33, 4, False) == tiling.ProjectionBlocks(8, (256, 256, 33))
    assert tiling.projection_blocks(128, 2048, 257, 4, True) == tiling.ProjectionBlocks(2, (256, 2048, 257))
    assert tiling.projection_blocks(64, 768, 129, 4, True) == tiling.ProjectionBlocks(4, (256, 768, 129))
    assert tiling.projection_blocks(1, 256, 33, 4, True).steps == tiling.PROJECTION_MAX_STEPS   # at most 8 steps
    assert tiling.projection_blocks(1000, 256, 33, 4, False) == tiling.ProjectionBlocks(1, (512, 256, 33))
    rows, col_block, depth_block = tiling.projection_blocks(16, 128, 1024, 4, True).blocks  # deep: column blocks
    assert col_block == tiling.SMALL_GEMM_COLUMNS and rows * col_block * depth_block <= tiling.SMALL_KERNEL_MAX_MNK


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_input_projection_matches_numpy_and_its_tasks_reproduce_alone(rng, dtype, rtol):
    a = rng.standard_normal((24, 12)).astype(dtype)[:, 3:]    # 4 tasks of 6 rows, row stride 12
    b = rng.standard_normal((9, 13)).astype(dtype)
    out = np.full((24, 13), np.nan, dtype)
    gemm.input_projection(a, b, out, 6, (4, 5, 4))
    np.testing.assert_allclose(out, a @ b, rtol=rtol, atol=rtol)
    alone = np.full((6, 13), np.nan, dtype)
    gemm.input_projection(np.ascontiguousarray(a[12:18]), b, alone, 6, (4, 5, 4))   # one task by itself
    assert np.array_equal(alone, out[12:18])


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("blocks", [(4, 3, 2), (30, 32, 1024), (5, 13, 9), (8, 4, 20)])
def test_row_block_gemm_matches_numpy_with_any_blocks(rng, dtype, rtol, blocks):
    a = rng.standard_normal((23, 12)).astype(dtype)[:, 3:]    # row stride 12, as a view of the tape
    b = rng.standard_normal((9, 13)).astype(dtype)
    out = np.full((23, 13), np.nan, dtype)
    gemm.row_block_gemm(a, b, out, np.array(blocks, dtype=np.int64))
    np.testing.assert_allclose(out, a @ b, rtol=rtol, atol=rtol)


def test_weight_gradient_blocks_only_where_they_were_measured_to_win():
    assert tiling.weight_gradient_blocks(256, 97, True) == (32, 322)         # small: K = I + 1 + H
    assert tiling.weight_gradient_blocks(512, 161, True) == (32, 194)
    assert tiling.weight_gradient_blocks(512, 289, True) is None             # 108-row chunks
    assert tiling.weight_gradient_blocks(768, 129, True) is None             # GRU medium: too many gates
    assert tiling.weight_gradient_blocks(1024, 385, True) is None            # medium
    assert tiling.weight_gradient_blocks(256, 97, False) is None             # Haswell kernels
    assert tiling.weight_gradient_blocks(32, 9, True) is None                # one column block


@pytest.mark.parametrize("cores,rows,expected", [(2, 6400, 2), (16, 6400, 8), (16, 1600, 4), (2, 100, 1)])
def test_weight_gradient_slabs_follow_the_cores_not_the_threads(monkeypatch, cores, rows, expected):
    monkeypatch.setattr(tiling.numba.config, "NUMBA_DEFAULT_NUM_THREADS", cores)
    assert tiling.reduction_parts(rows) == expected


def _weight_gradient_problem(rng, dtype):
    """dg (40, 20), the tape's columns (40, 9) with row stride 11, dg^T @ columns in float64, rtol."""
    dg = rng.standard_normal((40, 20)).astype(dtype)
    columns = rng.standard_normal((40, 11)).astype(dtype)[:, 2:]
    expected = dg.astype(np.float64).T @ columns.astype(np.float64)
    return dg, columns, expected, 1e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_slabs", [1, 3])
def test_slab_weight_gradients_match_numpy_with_rows_in_place(rng, dtype, n_slabs):
    dg, columns, expected, rtol = _weight_gradient_problem(rng, dtype)
    rows = rng.permutation(20)
    out = np.full((20, 9), np.nan, dtype)
    gemm.weight_gradients(dg, columns, out, np.full((n_slabs, 20, 9), np.nan, dtype), rows)
    np.testing.assert_allclose(out[rows], expected, rtol=rtol, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block_gates,block_rows", [(4, 5), (8, 64), (3, 7)])
def test_blocked_weight_gradients_match_numpy_whatever_the_task_count(rng, dtype, block_gates, block_rows):
    dg, columns, expected, rtol = _weight_gradient_problem(rng, dtype)
    results = []
    for n_tasks in (1, 2, 3, 7):
        out = np.full((20, 9), np.nan, dtype)
        gemm.weight_gradients_blocked(dg, columns, out, block_gates, block_rows, n_tasks)
        results.append(out)
    np.testing.assert_allclose(results[0], expected, rtol=rtol, atol=1e-5)
    for out in results[1:]:
        np.testing.assert_array_equal(out, results[0])


class _FakeController:
    def __init__(self, *cores):
        self.cores = cores

    def info(self):
        return [{"internal_api": "openblas", "architecture": core} for core in self.cores] + [
            {"internal_api": "openmp"}]


@pytest.mark.parametrize("cores,expected", [(("SkylakeX", "SkylakeX"), True), (("SkylakeX", "Haswell"), False),
                                            (("Haswell",), False), ((), False)])
def test_small_kernel_needs_every_openblas_on_an_avx512_core(monkeypatch, cores, expected):
    monkeypatch.setattr(blas_control, "_threadpool_controller", lambda: _FakeController(*cores))
    assert blas_control.small_kernel_available.__wrapped__() is expected


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_gemm_tn_reads_its_first_operand_transposed(rng, dtype, rtol):
    a = rng.standard_normal((9, 6)).astype(dtype)   # a[:, 1:]: (9, 5), row stride 6
    b = rng.standard_normal((9, 7)).astype(dtype)   # b[:, 2:]: (9, 5), row stride 7
    c = rng.standard_normal((5, 5)).astype(dtype)
    before = c.copy()
    _gemm_tn(a, b, c, 1.0)
    np.testing.assert_allclose(c, before + a[:, 1:].T @ b[:, 2:], rtol=rtol, atol=rtol)


@njit
def _double_row(h, s, b):
    row = views.unit_stride(h[s, b, 2:5])
    for j in range(row.size):
        row[j] *= 2.0
    return row.sum()


def test_unit_stride_view_reads_and_writes_the_same_elements():
    tape = np.arange(2 * 3 * 7, dtype=np.float64).reshape(2, 3, 7)
    expected = tape.copy()
    expected[1, 2, 3:6] *= 2
    total = _double_row(tape[:, :, 1:], 1, 2)  # a non-contiguous view: h columns of the tape
    np.testing.assert_array_equal(tape, expected)
    assert total == expected[1, 2, 3:6].sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_count_non_finite_counts_nan_and_both_infinities(rng, dtype):
    values = rng.standard_normal(70_001).astype(dtype)
    assert arrays.count_non_finite(values) == 0
    assert arrays.count_non_finite(values[:0]) == 0
    values[[0, 5, 40_000, -1]] = [np.nan, np.inf, -np.inf, np.nan]
    values[7] = np.finfo(dtype).max  # huge but finite
    assert arrays.count_non_finite(values) == 4


@pytest.mark.parametrize("reverse", [False, True])
def test_fill_inputs_writes_each_step_and_the_bias_column(rng, reverse):
    steps, batch, inputs, hidden = 6, 3, 4, 5
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    xh = np.full((steps + 1, batch, inputs + 1 + hidden), 7.0, np.float32)
    lengths = np.array([6, 2, 4])
    order = direction.reversal_index(lengths, steps) if reverse else arrays.IN_ORDER
    arrays.fill_inputs(x, order, xh)
    expected = direction.reorder(x, order) if reverse else x
    np.testing.assert_array_equal(xh[:steps, :, :inputs], expected)
    np.testing.assert_array_equal(xh[:steps, :, inputs], 1.0)
    np.testing.assert_array_equal(xh[:steps, :, inputs + 1:], 7.0)  # h columns untouched
    np.testing.assert_array_equal(xh[steps], 7.0)  # the final-state row untouched
    if reverse:  # row 1 (length 2): its two valid steps swapped, padded steps in place
        np.testing.assert_array_equal(xh[[0, 1, 2], 1, :inputs], x[[1, 0, 2], 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 2, 128, 256), (3, 2, 40, 37), (1, 1, 5, 3)])  # whole tiles, edges, tiny
def test_transpose_parts_matches_numpy(dtype, shape):
    """dst[u, k, b, j] = src[b, u, j, k], into a strided view (every other row)."""
    from lstm_numba.engine.kernels.arrays import transpose_parts

    n_blocks, parts, width, depth = shape
    src = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out = np.zeros((parts, 2 * depth, n_blocks, width), dtype)
    transpose_parts(src, out[:, ::2])
    np.testing.assert_array_equal(out[:, ::2], src.transpose(1, 3, 0, 2))
    assert not out[:, 1::2].any()
