"""safetensors files of layers and models, under their PyTorch parameter names.

``save_safetensors(obj, path)`` writes ``obj.state_dict()`` (``weight_ih_l0``, ... for a
layer; ``rnn.weight_ih_l0``, ``head.weight``, ``embedding.weight`` for a model) with the
``safetensors`` package's NumPy API, plus metadata ``{"format": "lstm-numba", "kind",
"config"}`` from which :func:`load_safetensors` rebuilds the object. A file without that
metadata (``safetensors.torch.save_file(torch_lstm.state_dict(), path)``) loads as the
``ln.LSTM`` or ``ln.GRU`` its names and shapes describe, or into an existing object with
``obj.load_safetensors(path)``. Needs the extra ``safetensors``.
"""

from __future__ import annotations

import json
import os
import re

from lstm_numba.interop.common import InteropError, describe, is_layer, is_model
from lstm_numba.nn.parameters import SAFETENSORS_FORMAT, read_safetensors


def save_safetensors(obj, path) -> None:
    """Write the parameters of a layer or model to ``path`` (atomically), PyTorch names."""
    if not (is_layer(obj) or is_model(obj)):
        raise InteropError(f"save_safetensors: expected an lstm-numba layer or model, got {describe(obj)}")
    obj.save_safetensors(path)


def load_safetensors(path):
    """The layer or model saved in ``path``: rebuilt from the lstm-numba metadata, or, for a
    file with PyTorch ``nn.LSTM``/``nn.GRU`` names only, the layer those names describe."""
    tensors, metadata = read_safetensors(path)
    path = os.fspath(path)
    try:
        if metadata.get("format") == SAFETENSORS_FORMAT:
            obj = _from_metadata(metadata)
        else:
            obj = _infer_layer(path, tensors)
        obj.load_state_dict(tensors)
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, InteropError):
            raise
        raise InteropError(f"{path}: {' '.join(str(exc).split())}") from None
    return obj.eval()


def _from_metadata(metadata: dict):
    from lstm_numba.nn.layers import GRU, LSTM
    from lstm_numba.nn.models import build_model

    config = json.loads(metadata["config"])
    if metadata.get("kind") == "layer":
        return {"GRU": GRU, "LSTM": LSTM}.get(metadata.get("class"), LSTM)(**config)
    return build_model(config)


_NAME = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)(_reverse)?")


def _infer_layer(path: str, tensors: dict):
    """The ``ln.LSTM``/``ln.GRU`` whose ``state_dict`` has exactly these PyTorch names."""
    from lstm_numba.nn.layers import GRU, LSTM

    foreign = sorted(k for k in tensors if not _NAME.fullmatch(k))
    if foreign or "weight_ih_l0" not in tensors:
        shown = ", ".join(foreign[:3]) or "no weight_ih_l0"
        raise InteropError(f"{path}: no lstm-numba metadata and not an nn.LSTM/nn.GRU state_dict "
                           f"({shown}); load it into a model with model.load_safetensors(path)")
    w_ih, w_hh = tensors["weight_ih_l0"], tensors.get("weight_hh_l0")
    hidden = w_hh.shape[1] if w_hh is not None and w_hh.ndim == 2 else 0
    blocks = w_ih.shape[0] // hidden if hidden and w_ih.shape[0] % hidden == 0 else 0
    if blocks not in (3, 4):
        raise InteropError(f"{path}: weight_ih_l0 {w_ih.shape} and weight_hh_l0 "
                           f"{None if w_hh is None else w_hh.shape} are neither an LSTM's (4H rows) nor a GRU's (3H)")
    layers = 1 + max(int(_NAME.fullmatch(k).group(2)) for k in tensors)
    dtype = w_ih.dtype.name if w_ih.dtype.name in ("float32", "float64") else "float32"
    cls = LSTM if blocks == 4 else GRU
    return cls(w_ih.shape[1], hidden, num_layers=layers, bidirectional="weight_ih_l0_reverse" in tensors,
               bias="bias_ih_l0" in tensors, dtype=dtype)
