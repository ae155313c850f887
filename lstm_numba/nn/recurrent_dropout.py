"""Recurrent dropout with Keras's semantics (``recurrent_dropout=p``): in training, gate
block k's recurrent GEMM reads h_{t-1} * m_k instead of h_{t-1}, with m_k a 0/1 mask drawn
once per sequence (per batch row, layer and direction; P(1) = 1 - p) and scaled by
1 / (1 - p); in evaluation, h_{t-1} itself. Keras's LSTMCell and GRUCell draw one such
mask per gate (``rec_dp_mask[k]``); the compiled kernels run one GEMM per gate block on the
masked rows (:mod:`lstm_numba.engine.kernels.recurrent_dropout`).
"""

from __future__ import annotations

import numpy as np

from lstm_numba.nn import validation


def probability(gate_name: str, gate, value, proj_size: int) -> float:
    """``recurrent_dropout``, validated: a probability in [0, 1), for a gate with recurrent weights."""
    p = validation.probability("recurrent_dropout", value)
    if p > 0 and not gate.recurrent:
        raise ValueError(f"recurrent_dropout: gate {gate_name!r} has no recurrent weights (no h_{{t-1}} @ W_hh "
                         "to drop from)")
    if p > 0 and proj_size:
        raise ValueError("recurrent_dropout: not available with proj_size")
    return p


def masks(p: float, batch: int, n_blocks: int, hidden: int, training: bool, rng: np.random.Generator,
          dtype) -> np.ndarray | None:
    """One direction's masks (B, n_blocks, H), 0 or 1 / (1 - p); None when off or in evaluation."""
    if p == 0 or not training:
        return None
    keep = 1.0 - p
    return ((rng.random((batch, n_blocks, hidden)) < keep) / keep).astype(dtype)
