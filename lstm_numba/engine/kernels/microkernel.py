"""The engine's own step-GEMM microkernel: ``c = a @ b (+ c)`` over a pre-packed ``b``,
register-blocked and written in LLVM vector IR, so that it runs packed FMA at the host's
vector width whatever BLAS build is loaded.

``b`` (K, N) is packed once per call of a direction pass (:func:`pack_panels`) into
panels of :data:`PANEL` columns, each contiguous along K: ``packed`` (ceil(N / PANEL),
K, PANEL), zeros past column N. A tile is :data:`TILE_ROWS` rows of ``a`` times one panel;
its ``TILE_ROWS * PANEL / WIDTH`` vector accumulators stay in registers across the whole K
loop (one broadcast of ``a[i, k]`` and one fused multiply-add per accumulator and k), and
the tile is written once. Every element is the sum over k in order 0..K-1 (one FMA per
term), whoever computes it, so results are bitwise the same whatever the thread count.

The vector width is the Numba target's: 16 float32 lanes (8 float64) where the target CPU
has AVX-512F, else 8 (4), from ``NUMBA_CPU_FEATURES`` / ``NUMBA_CPU_NAME`` when set, else
the host's features (:func:`target_width`). The kernels are cached by Numba per target CPU
and features, so a cache made for one ISA is never loaded for another.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core import codegen as numba_codegen
from numba.core import config as numba_config
from numba.extending import intrinsic

from lstm_numba.engine.kernels.blas import blocked_gemm

#: Bytes of one vector register on an AVX-512 and on an AVX2 target.
AVX512_BYTES, AVX2_BYTES = 64, 32


def target_features() -> str:
    """The LLVM feature string Numba compiles for, as Numba builds it: ``NUMBA_CPU_FEATURES``
    when set, else the host's (``NUMBA_CPU_NAME`` alone does not change the features, so
    an AVX2 target on an AVX-512 host takes both)."""
    return numba_config.CPU_FEATURES if numba_config.CPU_FEATURES is not None else numba_codegen.get_host_cpu_features()


def target_width_bytes() -> int:
    """Vector register bytes of the Numba target: 64 with AVX-512F, else 32."""
    return AVX512_BYTES if "+avx512f" in target_features().split(",") else AVX2_BYTES


#: Register bytes, fixed at import for the kernels compiled in this process.
VECTOR_BYTES = target_width_bytes()
#: Rows of ``a`` per tile: with two vectors per row, 16 accumulators of the 32 vector
#: registers on AVX-512, 12 of the 16 on AVX2 (the rest hold the panel's two vectors and
#: the broadcast). Measured single-threaded against 4 and 6 rows (AVX-512) on the benchmark
#: configs' step GEMMs (``benchmarks/bench_step_gemm.py``).
TILE_ROWS = 8 if VECTOR_BYTES == AVX512_BYTES else 6
#: Vector registers per panel row: PANEL = PANEL_VECTORS * VECTOR_BYTES // itemsize columns.
PANEL_VECTORS = 2
#: Rows of K per pass over a panel, so that the part of the panel every row tile reads stays
#: in L1 (256 * 32 float32 columns: 32 KiB); tiles after the first add to ``c``.
DEPTH_BLOCK = 256


def panel_columns(itemsize: int) -> int:
    """Columns per packed panel for an element size (bytes)."""
    return PANEL_VECTORS * VECTOR_BYTES // itemsize


def _array_parts(context, builder, array_type, value):
    array = context.make_array(array_type)(context, builder, value)
    return array.data, cgutils.unpack_tuple(builder, array.shape), cgutils.unpack_tuple(builder, array.strides)


@intrinsic
def _tile(typingctx, a, row0, rows, packed, panel, k0, k1, c, accumulate):
    """c[row0:row0+rows, panel*PANEL:...] (+)= a[row0:row0+rows] @ packed[panel] in registers.

    a (M, K) and c (M, N): row-major views with unit inner stride (any row stride);
    packed (P, K, PANEL) C-contiguous; rows 1..TILE_ROWS; accumulate: add to c instead of
    overwriting it. Rows past ``rows`` read row ``row0 + rows - 1`` again and are not
    stored; columns past N are not stored.
    """
    dtype = c.dtype
    signature = types.void(a, row0, rows, packed, panel, k0, k1, c, accumulate)

    def codegen(context, builder, sig, args):
        float_type = context.get_value_type(dtype)
        itemsize = context.get_abi_sizeof(float_type)
        lanes = VECTOR_BYTES // itemsize
        width = panel_columns(itemsize)
        n_vectors = width // lanes
        vector = ir.VectorType(float_type, lanes)
        int64 = ir.IntType(64)
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3), f"llvm.fma.v{lanes}f{8 * itemsize}")
        a_data, _, a_strides = _array_parts(context, builder, sig.args[0], args[0])
        p_data, p_shape, _ = _array_parts(context, builder, sig.args[3], args[3])
        c_data, c_shape, c_strides = _array_parts(context, builder, sig.args[7], args[7])
        row0_v = context.cast(builder, args[1], sig.args[1], types.int64)
        rows_v = context.cast(builder, args[2], sig.args[2], types.int64)
        panel_v = context.cast(builder, args[4], sig.args[4], types.int64)
        k0_v = context.cast(builder, args[5], sig.args[5], types.int64)
        k1_v = context.cast(builder, args[6], sig.args[6], types.int64)
        accumulate_v = context.cast(builder, args[8], sig.args[8], types.boolean)
        depth, n_cols = p_shape[1], c_shape[1]
        byte_ptr = ir.IntType(8).as_pointer()

        def element(base, byte_offset, typ):
            return builder.bitcast(builder.gep(builder.bitcast(base, byte_ptr), [byte_offset]), typ.as_pointer())

        one = ir.Constant(int64, 1)
        last = builder.sub(rows_v, one)
        a_rows = []
        for r in range(TILE_ROWS):  # rows past ``rows`` repeat the last valid one
            row = builder.add(row0_v, builder.select(builder.icmp_signed("<", ir.Constant(int64, r), rows_v),
                                                     ir.Constant(int64, r), last))
            a_rows.append(builder.gep(builder.bitcast(a_data, byte_ptr), [builder.mul(row, a_strides[0])]))
        panel_base = builder.gep(p_data, [builder.mul(panel_v, builder.mul(depth, ir.Constant(int64, width)))])
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(vector, [0.0] * lanes))
                 for _ in range(n_vectors)] for _ in range(TILE_ROWS)]
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        with cgutils.for_range_slice(builder, k0_v, k1_v, one) as (k, _):
            b_row = builder.gep(panel_base, [builder.mul(k, ir.Constant(int64, width))])
            b_vectors = [builder.load(builder.bitcast(builder.gep(b_row, [ir.Constant(int64, j * lanes)]),
                                                      vector.as_pointer()), align=itemsize)
                         for j in range(n_vectors)]
            for r in range(TILE_ROWS):
                a_value = builder.load(element(a_rows[r], builder.mul(k, ir.Constant(int64, itemsize)), float_type))
                a_splat = builder.shuffle_vector(
                    builder.insert_element(ir.Constant(vector, ir.Undefined), a_value, ir.Constant(ir.IntType(32), 0)),
                    ir.Constant(vector, ir.Undefined), zeros)
                for j in range(n_vectors):
                    builder.store(builder.call(fma, [a_splat, b_vectors[j], builder.load(accs[r][j])]), accs[r][j])
        col0 = builder.mul(panel_v, ir.Constant(int64, width))
        full = builder.icmp_signed("<=", builder.add(col0, ir.Constant(int64, width)), n_cols)
        for r in range(TILE_ROWS):
            with cgutils.if_likely(builder, builder.icmp_signed("<", ir.Constant(int64, r), rows_v)):
                row_ptr = element(c_data, builder.mul(builder.add(row0_v, ir.Constant(int64, r)), c_strides[0]),
                                  float_type)
                row_ptr = builder.gep(row_ptr, [col0])
                with builder.if_else(full, likely=True) as (whole, tail):
                    with whole:
                        for j in range(n_vectors):
                            ptr = builder.bitcast(builder.gep(row_ptr, [ir.Constant(int64, j * lanes)]),
                                                  vector.as_pointer())
                            value = builder.load(accs[r][j])
                            old = builder.load(ptr, align=itemsize)
                            value = builder.select(accumulate_v, builder.fadd(old, value), value)
                            builder.store(value, ptr, align=itemsize)
                    with tail:  # the last panel past N: element by element
                        with cgutils.for_range(builder, builder.sub(n_cols, col0)) as column:
                            j = column.index
                            value = builder.extract_element(
                                builder.load(accs[r][0]) if n_vectors == 1 else _pick(builder, accs[r], j, lanes),
                                builder.trunc(builder.srem(j, ir.Constant(int64, lanes)), ir.IntType(32)))
                            ptr = builder.gep(row_ptr, [j])
                            with builder.if_then(accumulate_v):
                                builder.store(builder.fadd(builder.load(ptr), value), ptr)
                            with builder.if_then(builder.not_(accumulate_v)):
                                builder.store(value, ptr)
        return context.get_dummy_value()

    return signature, codegen


def _pick(builder, vectors, column, lanes):
    """The accumulator vector that holds ``column`` of a panel."""
    index = builder.sdiv(column, ir.Constant(column.type, lanes))
    value = builder.load(vectors[0])
    for j in range(1, len(vectors)):
        value = builder.select(builder.icmp_signed("==", index, ir.Constant(column.type, j)),
                               builder.load(vectors[j]), value)
    return value


@njit(inline="always")
def packed_gemm(a, packed, c, r0, r1, accumulate):
    """c[r0:r1] = a[r0:r1] @ b (+ c[r0:r1] when ``accumulate``), ``packed`` being b in panels.

    a (M, K), c (M, N): row-major views with unit inner stride; packed (P, K, PANEL)
    (:func:`pack_panels`). Panels outside, row tiles inside, so that a panel stays in L1
    while every row tile reads it.
    """
    depth = packed.shape[1]
    for panel in range(packed.shape[0]):
        for k0 in range(0, depth, DEPTH_BLOCK):
            k1 = min(k0 + DEPTH_BLOCK, depth)
            for lo in range(r0, r1, TILE_ROWS):
                _tile(a, lo, min(TILE_ROWS, r1 - lo), packed, panel, k0, k1, c, accumulate or k0 > 0)


@njit(inline="always")
def step_gemm(a, b, packed, c, r0, r1, blocks, beta):
    """c[r0:r1] = a[r0:r1] @ b + beta * c[r0:r1] (beta 0 or 1): a time step's GEMM.

    a (M, K), b (K, N), c (M, N): row-major views with unit inner stride. Through the
    microkernel when ``packed`` holds b's panels ((P, K, PANEL), P > 0), else through BLAS
    in ``blocks`` = (rows, columns, depth) (:func:`lstm_numba.engine.kernels.blas.blocked_gemm`;
    ``packed`` then has no panels). The engine's ``tiling.step_kernel`` chooses.
    """
    if packed.shape[0] > 0:
        packed_gemm(a, packed, c, r0, r1, beta != 0.0)
    else:
        blocked_gemm(a, b, c, r0, r1, blocks[0], blocks[1], blocks[2], beta)


def pack_panels(b: np.ndarray) -> np.ndarray:
    """b (..., K, N) as (..., ceil(N / PANEL), K, PANEL) panels, zeros past column N."""
    *lead, depth, n_cols = b.shape
    width = panel_columns(b.dtype.itemsize)
    n_panels = -(-n_cols // width)
    padded = np.zeros((*lead, depth, n_panels * width), b.dtype)
    padded[..., :n_cols] = b
    return np.ascontiguousarray(np.moveaxis(padded.reshape(*lead, depth, n_panels, width), -2, -3))


def no_panels(parts: int, dtype) -> np.ndarray:
    """The ``packed`` argument of :func:`step_gemm` for BLAS: (parts, 0, 0, PANEL)."""
    return np.zeros((parts, 0, 0, panel_columns(np.dtype(dtype).itemsize)), dtype)
