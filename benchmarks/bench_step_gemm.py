#!/usr/bin/env python
"""The recurrent step GEMM alone: the engine's packed microkernel against BLAS.

    .venv/bin/python benchmarks/bench_step_gemm.py [--steps 200] [--rounds 7]
    OPENBLAS_CORETYPE=Haswell NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=... python benchmarks/bench_step_gemm.py

For the step GEMMs of the three benchmark configs (B=32/64/128, H=64/256/512, G=4H), as
one thread of the engine runs them (the rows of one chunk, the columns of one hidden part:
``tiling.choose_tiling``), forward ``(rows, H) @ (H, G/U)`` and backward's carry
``(rows, G) @ (G, W)``, it times ``--steps`` calls in one compiled loop on one thread,
BLAS through the engine's ``blocked_gemm`` with the tiling's blocks and the microkernel
over the pre-packed weights, alternating over ``--rounds`` rounds, and prints the median
microseconds per step, GFLOP/s and the ratio BLAS / microkernel (above 1: the microkernel
wins). Also the Numba target, its vector width and the BLAS kernel.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from numba import njit

from lstm_numba.engine import blas_control, tiling
from lstm_numba.engine.kernels import microkernel
from lstm_numba.engine.kernels.blas import blocked_gemm
from lstm_numba.profiling import machine

CONFIGS = {"small": (32, 32, 64), "medium": (64, 128, 256), "large": (128, 256, 512)}  # B, I, H


@njit(cache=True, nogil=True)
def blas_steps(a, b, c, steps, blocks):
    for _ in range(steps):
        blocked_gemm(a, b, c, 0, a.shape[0], blocks[0], blocks[1], blocks[2], 0.0)


@njit(cache=True, nogil=True)
def packed_steps(a, packed, c, steps):
    for _ in range(steps):
        microkernel.packed_gemm(a, packed, c, 0, a.shape[0], False)


def step_shapes(batch, inputs, hidden, itemsize):
    """[(name, rows, depth, cols, blas blocks)] of one thread's forward and backward step GEMMs."""
    tile = tiling.choose_tiling(True, False, batch, inputs, hidden, 4 * hidden, itemsize)
    rows = tile.forward_blocks[0]
    width, part_gates = hidden // tile.parts, 4 * hidden // tile.parts
    return [("forward", rows, hidden, part_gates, tile.forward_blocks),
            ("backward", rows, 4 * hidden, width, tile.backward_blocks)]


def measure(rows, depth, cols, blocks, dtype, steps, rounds):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, depth)).astype(dtype)
    b = rng.standard_normal((depth, cols)).astype(dtype)
    packed = microkernel.pack_panels(b)
    c_blas, c_ours = np.empty((rows, cols), dtype), np.empty((rows, cols), dtype)
    blas_steps(a, b, c_blas, 1, blocks)
    packed_steps(a, packed, c_ours, 1)
    err = float(np.abs(c_ours - a.astype(np.float64) @ b).max() / np.abs(c_blas).max())
    times = {"blas": [], "micro": []}
    for _ in range(rounds):
        for name, call in (("blas", lambda: blas_steps(a, b, c_blas, steps, blocks)),
                           ("micro", lambda: packed_steps(a, packed, c_ours, steps))):
            start = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(v) for name, v in times.items()}, err


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="step GEMMs per timed loop (default 200)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    dtype = np.dtype(args.dtype)
    cpu = machine.cpu_model()
    blas = sorted({f"{r['internal_api']} {r['architecture']}" for r in machine.blas_info() if r["user_api"] == "blas"})
    print(f"{machine.cpu_description()}; Numba target {cpu['llvm_cpu']}, vector {microkernel.VECTOR_BYTES * 8} bits,"
          f" panel {microkernel.panel_columns(dtype.itemsize)} columns x {microkernel.TILE_ROWS} rows; "
          f"BLAS {', '.join(blas)} (small-matrix kernel: {blas_control.small_kernel_available()}); {dtype}, 1 thread")
    print(f"{'config':<8}{'GEMM':<10}{'shape':>18}{'BLAS us':>10}{'micro us':>10}{'BLAS GF/s':>11}"
          f"{'micro GF/s':>11}{'BLAS/micro':>11}{'rel err':>9}")
    with blas_control.blas_single_thread():
        for name, (batch, inputs, hidden) in CONFIGS.items():
            for gemm, rows, depth, cols, blocks in step_shapes(batch, inputs, hidden, dtype.itemsize):
                med, err = measure(rows, depth, cols, blocks, dtype, args.steps, args.rounds)
                flops = 2.0 * rows * depth * cols
                print(f"{name:<8}{gemm:<10}{f'{rows}x{depth}@{depth}x{cols}':>18}{1e6 * med['blas']:>10.1f}"
                      f"{1e6 * med['micro']:>10.1f}{flops / med['blas'] / 1e9:>11.1f}{flops / med['micro'] / 1e9:>11.1f}"
                      f"{med['blas'] / med['micro']:>11.2f}{err:>9.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
