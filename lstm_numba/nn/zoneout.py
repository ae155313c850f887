"""Zoneout (Krueger et al. 2016) on a layer's states: the probabilities and the weights
the compiled kernels mix each step's new state with.

With zoneout probability p on a state vector, a valid step's state is
``m * new + (1 - m) * previous``: in training m is a 0/1 mask per step, row and unit,
drawn with P(m = 1) = 1 - p from the layer's generator (each unit keeps its previous
value with probability p); in evaluation m = 1 - p everywhere, the expectation, as
haste's LSTM does. ``zoneout`` acts on h, ``zoneout_cell`` on the cell state c (gates
whose state has a ``"c"``). The kernels apply the weights around the gate's pointwise
code (:mod:`lstm_numba.engine.kernels.template`), so every step-loop gate gets them;
the scan gates (minGRU, minLSTM) refuse zoneout, and so does a projected layer (``proj_size``).
"""

from __future__ import annotations

import numpy as np

from lstm_numba.nn import validation


def state_probabilities(gate_name: str, state_names: tuple, zoneout, zoneout_cell, proj_size: int,
                        scan: bool) -> tuple:
    """The zoneout probability of each state vector (h first), validated; all zeros when off.

    Refused with ``proj_size`` and for a gate that trains as a parallel scan (``scan``:
    minGRU, minLSTM), whose log-space coefficients the masks would have to enter."""
    p_h = validation.probability("zoneout", zoneout)
    p_c = validation.probability("zoneout_cell", zoneout_cell)
    if p_c > 0 and "c" not in state_names:
        raise ValueError(f"zoneout_cell: gate {gate_name!r} has no cell state (its states are "
                         f"{', '.join(state_names)}); use zoneout for h")
    if (p_h > 0 or p_c > 0) and proj_size:
        raise ValueError("zoneout, zoneout_cell: not available with proj_size (a projected layer's h is not "
                         "a state of its gate)")
    if (p_h > 0 or p_c > 0) and scan:
        raise ValueError(f"zoneout: not available with gate {gate_name!r}, which trains as a parallel scan over "
                         "time (its steps are not run one by one)")
    return tuple(p_h if name == "h" else p_c if name == "c" else 0.0 for name in state_names)


def mixing_weights(probabilities: tuple, steps: int, batch: int, hidden: int, training: bool,
                   rng: np.random.Generator, dtype) -> np.ndarray | None:
    """The weights of the new state, (T_k, B, S, H) in time order, for one direction of one layer.

    None when every probability is 0 (the kernels then run without zoneout). Training:
    T_k = T masks of 0/1 with P(1) = 1 - p. Evaluation: T_k = 1, 1 - p everywhere.
    """
    if not any(probabilities):
        return None
    keep = np.asarray([1.0 - p for p in probabilities], dtype)[None, None, :, None]
    if not training:
        return np.broadcast_to(keep, (1, batch, len(probabilities), hidden))
    return (rng.random((steps, batch, len(probabilities), hidden)) < keep).astype(dtype)
