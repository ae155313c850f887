"""The torch comparison: the model's ``torch.nn.LSTM``/``GRU`` equivalent, timed in
alternating blocks with ours through both public APIs.
"""

from __future__ import annotations

import time

import numpy as np

from lstm_numba.profiling.machine import import_torch
from lstm_numba.profiling.timing import (
    BLOCK_WARMUP_S,
    COMPARE_CALLS,
    COMPARE_PAUSE_S,
    interleaved_samples,
    median_ms,
)


def _torch_equivalent(model):
    """A ``torch.nn.LSTM``/``GRU`` with the model's weights, or ``(None, reason)``."""
    torch = import_torch()
    if torch is None:
        return None, "torch is not installed: no comparison"
    cfg = model.config()
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cfg["gate"])
    if cls is None:
        return None, f"torch has no equivalent of gate {cfg['gate']!r}: no comparison"
    if (cfg["activation"], cfg["recurrent_activation"]) != ("tanh", "sigmoid") or cfg["clip"] is not None:
        return None, "torch has no equivalent of non-default activations or clip: no comparison"
    ab = (cfg["activation_alpha"], cfg["activation_beta"], cfg["recurrent_activation_alpha"],
          cfg["recurrent_activation_beta"])
    defaults = []
    from lstm_numba import registry

    for name in ("tanh", "sigmoid"):
        act = registry.get_activation(name).obj
        defaults += [act.alpha, act.beta]
    if list(ab) != defaults:
        return None, "torch has no equivalent of non-default activation parameters: no comparison"
    extra = {"proj_size": model.proj_size} if getattr(model, "proj_size", 0) else {}
    net = cls(model.input_size, model.hidden_size, num_layers=model.num_layers, bias=model.bias,
              bidirectional=model.bidirectional, dtype=getattr(torch, model.dtype.name), **extra)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            getattr(net, key).copy_(torch.from_numpy(value))
    return net, ""


def profile_torch(model, x_user, dy_user, x, dy, repeat) -> dict:
    """Time ``model`` and its torch equivalent in alternating blocks (:func:`interleaved_samples`).

    ``x_user`` and ``dy_user`` are in the model's layout, ``x`` and ``dy`` time-major.
    ``repeat`` rounds of :data:`COMPARE_CALLS` timed calls each, for forward+backward and
    for inference; the ratios are of the medians.
    """
    net, reason = _torch_equivalent(model)
    if net is None:
        return {"available": False, "note": reason}
    import numba
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(numba.get_num_threads())
    try:
        tx = torch.from_numpy(x).requires_grad_(True)
        tdy = torch.from_numpy(dy)
        with torch.no_grad():
            ty, _ = net(tx)
        ours = np.asarray(model.forward(x_user, need_grad=False)[0])
        diff = float(np.max(np.abs(ty.numpy() - (ours.transpose(1, 0, 2) if model.batch_first else ours))))

        def torch_forward_backward():
            for p in net.parameters():
                p.grad = None
            tx.grad = None
            out, _ = net(tx)
            out.backward(tdy)

        def torch_inference():
            with torch.no_grad():
                net(tx)

        def ours_forward_backward():
            model.forward(x_user, need_grad=True)
            model.backward(dy_user)

        def ours_inference():
            model.forward(x_user, need_grad=False)

        time.sleep(COMPARE_PAUSE_S)
        samples = {
            "forward_backward": interleaved_samples({"ours": ours_forward_backward, "torch": torch_forward_backward},
                                                    repeat, COMPARE_CALLS, COMPARE_PAUSE_S),
            "inference": interleaved_samples({"ours": ours_inference, "torch": torch_inference},
                                             repeat, COMPARE_CALLS, COMPARE_PAUSE_S),
        }
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    time.sleep(COMPARE_PAUSE_S)
    result = {"available": True, "module": type(net).__name__, "version": torch.__version__, "threads": threads,
              "max_abs_diff_forward": diff}
    for mode, timed in samples.items():
        ours_ms, torch_ms = median_ms(timed["ours"]), median_ms(timed["torch"])
        result.update({f"{mode}_ms": torch_ms, f"ours_{mode}_ms": ours_ms, f"ratio_{mode}": torch_ms / ours_ms})
    result["sampling"] = {"rounds": repeat, "calls": COMPARE_CALLS, "pause_s": COMPARE_PAUSE_S,
                          "warmup_s": BLOCK_WARMUP_S}
    result["note"] = ("ratio = torch time / our time (> 1: lstm-numba is faster), medians of alternating blocks "
                      "of calls through the public APIs; torch has our weights")
    return result
