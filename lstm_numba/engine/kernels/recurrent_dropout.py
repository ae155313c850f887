"""Recurrent dropout inside the time loops (Keras's ``recurrent_dropout``): gate block k's
recurrent GEMM reads h_{t-1} * m_k, one mask m_k per row and block for the whole sequence.

A mask on the GEMM's input differs per block, so each block runs its own GEMM on a masked
copy of the tape rows: the same multiply-adds as the one unmasked GEMM, plus one pass over
h per block. The time loops of :mod:`lstm_numba.engine.kernels.template` call these only
when masks are given; without them they run their plain GEMMs.
"""

from numba import njit

from lstm_numba.engine.kernels.blas import blocked_gemm


@njit(inline="always")
def masked_recurrent_gemm(rec_in, mask, w_part, out, scratch, r0, r1, blocks, beta):
    """out[r0:r1, block k] = rec_in_k[r0:r1] @ w_part[:, block k] + beta * out, for every block k.

    rec_in   (B, K)           tape rows whose last H columns are h_{s-1} ([x_s, 1, h_{s-1}] when
                              the input projection is fused, h_{s-1} alone otherwise)
    mask     (n_blocks, B, H) the scaled 0/1 masks; rec_in_k is rec_in with h_{s-1} * mask[k]
    w_part   (K, G/U)         one hidden part's GEMM weights, columns block by block (W = G/U/n_blocks each)
    out      (B, G/U)         the part's pre-activations (gh, or gx for an additive gate)
    scratch  (B, K)           scratch for rec_in_k (rows [r0, r1) only)
    """
    n_blocks, _, hidden = mask.shape
    lead = rec_in.shape[1] - hidden
    width = w_part.shape[1] // n_blocks
    for k in range(n_blocks):
        for b in range(r0, r1):
            src, dst, m = rec_in[b], scratch[b], mask[k, b]
            for j in range(lead):
                dst[j] = src[j]
            for j in range(hidden):
                dst[lead + j] = src[lead + j] * m[j]
        blocked_gemm(scratch, w_part[:, k * width:(k + 1) * width], out[:, k * width:(k + 1) * width], r0, r1,
                     blocks[0], blocks[1], blocks[2], beta)


@njit(inline="always")
def masked_carry(dgh_s, mask, w_part, ds_h, scratch, part, r0, r1, blocks):
    """ds_h[r0:r1] += sum over blocks k of mask[k] * (dgh_s[:, block k] @ w_part[block k rows]).

    dgh_s    (B, G)           dLoss/dgh of one step, part-major (U parts of n_blocks blocks of W)
    mask     (n_blocks, B, H) the masks forward used
    w_part   (G, W)           W_hh's rows (part-major) for the W hidden units of ``part``
    ds_h     (B, W)           the h columns of ``part``'s state gradient, accumulated into
    scratch  (B, W)           scratch for one block's product (rows [r0, r1) only)
    """
    n_blocks = mask.shape[0]
    width = ds_h.shape[1]
    n_parts = dgh_s.shape[1] // (n_blocks * width)
    u0 = part * width
    for k in range(n_blocks):
        for v in range(n_parts):  # block k's gates sit in every part of the part-major rows
            g = (v * n_blocks + k) * width
            blocked_gemm(dgh_s[:, g:g + width], w_part[g:g + width], scratch, r0, r1, blocks[0], blocks[1],
                         blocks[2], 0.0 if v == 0 else 1.0)
        for b in range(r0, r1):
            row, product, m = ds_h[b], scratch[b], mask[k, b]
            for j in range(width):
                row[j] += m[u0 + j] * product[j]
