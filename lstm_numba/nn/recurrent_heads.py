"""Block-diagonal recurrent weights: a layer with ``num_heads`` heads (xLSTM's multi-head sLSTM).

With NH heads of DH = H / NH units, unit block ``h`` of every gate block reads only head
``h`` of h_{t-1}: W_hh is block-diagonal, one (n_blocks * DH, DH) block per head, and the
layer stores just those blocks,

    weight_hh_l{k}   (NH, n_blocks * DH, DH)   head h's rows in gate-block order (i, f, z, o
                                               for sLSTM), each block DH rows in unit order

so an off-block weight does not exist. ``dense`` builds the (n_blocks * H, H) matrix in
PyTorch's row order that the engine runs; ``blocks_of`` takes the per-head blocks of a
dense gradient. xLSTM stores the same weights as ``R`` (NH, DH, n_blocks, DH), R[h, k, g, a]
being the weight from unit k of head h to unit a of gate block g of head h:
``from_xlstm`` and ``to_xlstm`` convert.
"""

from __future__ import annotations

import numpy as np


def head_width(hidden_size: int, num_heads) -> int:
    """DH = hidden_size / num_heads; a ValueError naming both unless num_heads divides hidden_size."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
        raise ValueError(f"num_heads: expected a positive integer, got {num_heads!r}")
    if hidden_size % num_heads:
        raise ValueError(f"num_heads={num_heads} does not divide hidden_size={hidden_size}: each head needs "
                         "hidden_size / num_heads units")
    return hidden_size // num_heads


def dense(blocks: np.ndarray, n_blocks: int) -> np.ndarray:
    """(n_blocks * H, H) block-diagonal W_hh, PyTorch's row order, from (NH, n_blocks * DH, DH)."""
    heads, rows, width = blocks.shape
    hidden = heads * width
    out = np.zeros((n_blocks, hidden, hidden), dtype=blocks.dtype)
    per_gate = blocks.reshape(heads, n_blocks, width, width)
    for h in range(heads):
        cols = slice(h * width, (h + 1) * width)
        out[:, cols, cols] = per_gate[h]
    return out.reshape(n_blocks * hidden, hidden)


def blocks_of(matrix: np.ndarray, num_heads: int) -> np.ndarray:
    """The (NH, n_blocks * DH, DH) diagonal blocks of a (n_blocks * H, H) matrix."""
    rows, hidden = matrix.shape
    n_blocks, width = rows // hidden, hidden // num_heads
    per_gate = matrix.reshape(n_blocks, num_heads, width, num_heads, width)
    heads = np.arange(num_heads)
    # per_gate[:, h, :, h, :] for every h: (NH, n_blocks, DH, DH)
    return np.ascontiguousarray(per_gate[:, heads, :, heads, :]).reshape(num_heads, n_blocks * width, width)


def from_xlstm(recurrent_kernel) -> np.ndarray:
    """Our (NH, n_blocks * DH, DH) blocks from xLSTM's recurrent kernel R (NH, DH, n_blocks, DH)."""
    r = np.asarray(recurrent_kernel)
    if r.ndim != 4 or r.shape[1] != r.shape[3]:
        raise ValueError(f"recurrent_kernel: expected xLSTM's (num_heads, head_dim, n_blocks, head_dim), "
                         f"got shape {r.shape}")
    heads, width, n_blocks, _ = r.shape
    return np.ascontiguousarray(r.transpose(0, 2, 3, 1)).reshape(heads, n_blocks * width, width)


def to_xlstm(blocks, n_blocks: int = 4) -> np.ndarray:
    """xLSTM's R (NH, DH, n_blocks, DH) from our (NH, n_blocks * DH, DH) ``weight_hh`` blocks."""
    b = np.asarray(blocks)
    if b.ndim != 3 or b.shape[1] != n_blocks * b.shape[2]:
        raise ValueError(f"weight_hh: expected (num_heads, {n_blocks} * head_dim, head_dim), got shape {b.shape}")
    heads, _, width = b.shape
    return np.ascontiguousarray(b.reshape(heads, n_blocks, width, width).transpose(0, 3, 1, 2))
