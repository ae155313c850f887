"""Direct BLAS GEMM calls from compiled code, with strides, accumulation and fixed blocking.

Numba's ``np.dot`` copies any operand that is not C-contiguous and always overwrites its
output. The time loops need more: a GEMM into a column slice of a wider array
(``gx[s][:, part]``), accumulation into it (``beta = 1``), and a choice of block shape.
So they call SciPy's BLAS (``scipy.linalg.cython_blas``, the library ``np.dot`` itself
uses) through symbols registered with LLVM. A call by symbol name, unlike a ctypes function
pointer, keeps the kernels cacheable on disk (the symbol is registered again, at import, in
every process).

Why blocks: OpenBLAS's AVX-512 builds (SkylakeX and later cores) run GEMMs of at most
``M*N*K = 10**6`` through a *small-matrix kernel* that does not pack its operands
(``sgemm_small_kernel_permit_skylakex.c``). A time step's GEMM is a few batch rows times a
weight matrix that every step repacks; split into blocks that take the small-matrix path it
runs faster. Measured single-threaded, float32, SkylakeX kernels: 64x256 @ 256x512 took
92 us in one call and 68 us in blocks of 32 columns (with the weights on a cache line: 84
us at NumPy's 16-byte offset); 64x1024 @ 1024x128 took 94 us and 66 us in blocks of 32
columns by 256 of depth. Blocks still won, by 20-40%, with weights up to 1.25 MiB
(a 1 MiB L2 here; 100 steps of 64 rows on 2 threads, float32: 64x320 @ 320x640 12.5
against 15.6 ms, 64x385 @ 385x512 12.4 against 16.7, 64x512 @ 512x640 19.3 against 25.5;
float64 64x1024 @ 1024x128 16.2 against 25.9, 64x256 @ 256x512 21.2 against 21.9). They
are slower with 2 MiB of weights (64x512 @ 512x1024: 45.9 against 41.8 ms), with 128-row
blocks, and with the Haswell kernels (no small-matrix path: 162 against 173-180 us), so
they are used only where they were measured to win (:func:`gemm_blocks`).
"""

from __future__ import annotations

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

for _routine in ("sgemm", "dgemm"):
    llvm.add_symbol(f"lstm_numba_{_routine}", get_cython_function_address("scipy.linalg.cython_blas", _routine))


def _fortran_gemm(transpose_second: bool):
    """An intrinsic for column-major ``c = first @ op(second) + beta * c`` through ``?gemm``.

    ``op`` transposes when ``transpose_second``; alpha is 1. Fortran BLAS takes every
    argument by pointer: the scalars go into stack slots made once per function (as
    Numba's own ``np.dot`` does; a heap array per call measured 1.3 us per call with two
    threads allocating).
    """
    second_op = ord("T") if transpose_second else ord("N")

    @intrinsic
    def call(typingctx, cols, rows, depth, first, ld_first, second, ld_second, beta, c, ldc):
        dtype = c.dtype
        signature = types.void(cols, rows, depth, first, ld_first, second, ld_second, beta, c, ldc)

        def codegen(context, builder, sig, args):
            int32, char = ir.IntType(32), ir.IntType(8)
            byte_ptr = char.as_pointer()
            float_type = context.get_value_type(dtype)

            def slot(value_type, value):
                pointer = cgutils.alloca_once(builder, value_type)
                builder.store(value, pointer)
                return builder.bitcast(pointer, byte_ptr)

            def int_slot(i):
                return slot(int32, builder.trunc(context.cast(builder, args[i], sig.args[i], types.int64), int32))

            def data(i):
                return builder.bitcast(context.make_array(sig.args[i])(context, builder, args[i]).data, byte_ptr)

            routine = "lstm_numba_sgemm" if dtype == types.float32 else "lstm_numba_dgemm"
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_ptr] * 13), routine)
            builder.call(function, [
                slot(char, ir.Constant(char, ord("N"))), slot(char, ir.Constant(char, second_op)),
                int_slot(0), int_slot(1), int_slot(2), slot(float_type, ir.Constant(float_type, 1.0)),
                data(3), int_slot(4), data(5), int_slot(6),
                slot(float_type, context.cast(builder, args[7], sig.args[7], dtype)), data(8), int_slot(9),
            ])
            return context.get_dummy_value()

        return signature, codegen

    return call


_gemm_nn = _fortran_gemm(transpose_second=False)


_gemm_nt = _fortran_gemm(transpose_second=True)


@njit(inline="always")
def gemm(a, b, c, beta):
    """c = a @ b + beta * c for row-major 2-D views with unit inner stride (any row stride).

    a (M, K), b (K, N), c (M, N), all of one float dtype. Row-major C = A @ B is the
    column-major C^T = B^T @ A^T, so BLAS gets the operands swapped.
    """
    size = c.itemsize
    _gemm_nn(b.shape[1], a.shape[0], a.shape[1], b, b.strides[0] // size, a, a.strides[0] // size, beta, c,
             c.strides[0] // size)


@njit(inline="always")
def gemm_tn(a, b, c, beta):
    """c = a^T @ b + beta * c for row-major 2-D views with unit inner stride.

    a (K, M), b (K, N), c (M, N): column-major C^T = B^T @ A, with A read transposed.
    """
    size = c.itemsize
    _gemm_nt(b.shape[1], a.shape[1], a.shape[0], b, b.strides[0] // size, a, a.strides[0] // size, beta, c,
             c.strides[0] // size)


@njit(inline="always")
def blocked_gemm(a, b, c, r0, r1, block_rows, col_block, depth_block, beta):
    """c[r0:r1] = a[r0:r1] @ b + beta * c[r0:r1], in fixed blocks.

    a (M, K), b (K, N), c (M, N). Rows go in blocks of ``block_rows`` (``r0`` and ``r1``
    fall on block boundaries or at the end), columns in blocks of ``col_block`` and the
    depth in blocks of ``depth_block``, accumulated in order. Every block has the same
    shape whoever computes it, so results do not depend on the thread count (OpenBLAS's
    results depend on a call's shape).
    """
    depth = a.shape[1]
    n_cols = b.shape[1]
    for lo in range(r0, r1, block_rows):
        hi = min(lo + block_rows, r1)
        for c0 in range(0, n_cols, col_block):
            c1 = min(c0 + col_block, n_cols)
            for k0 in range(0, depth, depth_block):
                k1 = min(k0 + depth_block, depth)
                gemm(a[lo:hi, k0:k1], b[k0:k1, c0:c1], c[lo:hi, c0:c1], beta if k0 == 0 else 1.0)
