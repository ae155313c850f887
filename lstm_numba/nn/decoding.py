"""Greedy and beam-search decoding over any step function.

``step(tokens, state) -> (log_probs, state)``: ``tokens`` ``(K,)`` the last token of each
of ``K`` hypotheses, ``log_probs`` ``(K, V)`` the next token's log-probabilities;
``reorder(state, rows)`` selects and repeats hypotheses' states (``rows`` an index array).
The model's step function is :meth:`lstm_numba.nn.seq2seq.Seq2Seq.decoder_step`; the
tests drive these functions with hand-made probability tables.
"""

from __future__ import annotations

import numpy as np


def greedy_search(step, state, batch: int, bos: int, eos: int, max_len: int) -> list:
    """The most probable next token at every step, for ``batch`` sequences at once; each
    result is a list of token ids without ``bos`` and ``eos``."""
    tokens = np.full(batch, bos, dtype=np.int64)
    out = np.full((batch, max_len), eos, dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    for t in range(max_len):
        log_probs, state = step(tokens, state)
        tokens = np.argmax(log_probs, axis=1).astype(np.int64)
        out[:, t] = np.where(done, eos, tokens)
        done |= tokens == eos
        if done.all():
            break
    return [list(row[:np.argmax(row == eos)] if (row == eos).any() else row) for row in out]


def beam_search(step, state, reorder, bos: int, eos: int, max_len: int, width: int = 4,
                length_penalty: float = 1.0) -> list:
    """The best sequence of one source by beam search: ``width`` hypotheses kept per step;
    a finished hypothesis (it produced ``eos``) is ranked by ``log P / len ** length_penalty``
    (``len`` counts ``eos``; 0 ranks by the plain log-probability). The search stops once
    ``width`` hypotheses have finished (or at ``max_len``). Returns token ids
    without ``bos`` and ``eos``. ``state`` holds one hypothesis (one row)."""
    if width < 1:
        raise ValueError(f"beam width must be >= 1, got {width}")
    prefixes = [[]]
    scores = np.zeros(1)
    tokens = np.array([bos], dtype=np.int64)
    finished = []  # (normalised score, tokens)
    for t in range(max_len):
        log_probs, state = step(tokens, state)
        total = scores[:, None] + log_probs.astype(np.float64)
        rows, keep_tokens, keep_scores = [], [], []
        for index in np.argsort(-total, axis=None, kind="stable"):
            row, token = divmod(int(index), total.shape[1])
            if token == eos:
                finished.append((float(total[row, token]) / (t + 1) ** length_penalty, prefixes[row]))
            else:
                rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(float(total[row, token]))
            if len(rows) == width:
                break
        if len(finished) >= width or not rows:  # early stopping: width finished hypotheses
            break
        prefixes = [prefixes[r] + [k] for r, k in zip(rows, keep_tokens)]
        scores = np.array(keep_scores)
        tokens = np.array(keep_tokens, dtype=np.int64)
        state = reorder(state, np.array(rows, dtype=np.int64))
    else:  # max_len reached: the live hypotheses compete too
        finished += [(s / max_len ** length_penalty, p) for s, p in zip(scores, prefixes)]
    return max(finished, key=lambda f: f[0])[1]
