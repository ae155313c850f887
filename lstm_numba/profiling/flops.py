"""GEMM flop counts of a layer stack's forward (backward is twice that).
"""

from __future__ import annotations


def forward_flops(steps: int, batch: int, input_size: int, hidden_size: int, n_blocks: int = 4,
                  num_layers: int = 1, num_directions: int = 1) -> float:
    """GEMM flops of one forward: ``2·T·B·G·(I+H)`` per (layer, direction)."""
    gates = n_blocks * hidden_size
    total = 0.0
    for layer in range(num_layers):
        layer_input = input_size if layer == 0 else hidden_size * num_directions
        total += num_directions * 2.0 * steps * batch * gates * (layer_input + hidden_size)
    return total


def model_flops(model, steps: int, batch: int) -> tuple[float, float]:
    """GEMM flops of one forward of ``model``: (input projections, recurrent projections).

    Read from the parameter shapes, so it holds for any gate: ``2·T·B·G·I`` per
    ``weight_ih*`` and ``2·T·B·G·H`` per ``weight_hh*``. Backward is twice the sum.
    """
    input_flops = recurrent_flops = 0.0
    for key, value in model.params.items():
        if key.startswith("weight_ih"):
            input_flops += 2.0 * steps * batch * value.shape[0] * value.shape[1]
        elif key.startswith("weight_hh"):
            recurrent_flops += 2.0 * steps * batch * value.shape[0] * value.shape[1]
    return input_flops, recurrent_flops


def fused_input_flops(model, steps: int, batch: int) -> float:
    """The part of :func:`model_flops`' input flops that runs inside the forward kernels.

    ``2·T·B·G·I`` for each ``weight_ih*`` whose projection the engine fuses into the time
    loop (the tiling the engine chooses for that shape, :func:`lstm_numba.engine.tiling`).
    """
    from lstm_numba.engine import tiling

    gate = model.gate
    total = 0.0
    for key, value in model.params.items():
        if key.startswith("weight_ih"):
            n_gates, inputs = value.shape
            tile = tiling.choose_tiling(gate.elementwise, gate.additive, batch, inputs, model.hidden_size, n_gates,
                                        model.dtype.itemsize, gate.recurrent)
            if tile.fused_input:
                total += 2.0 * steps * batch * n_gates * inputs
    return total


def gflops_of(flops: float, ms: float) -> float | None:
    return flops / (ms * 1e-3) / 1e9 if ms and ms > 0 else None
