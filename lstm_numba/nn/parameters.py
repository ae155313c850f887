"""Named parameter arrays, shared by the layers and the models."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping

import numpy as np

from lstm_numba.formats import InteropError, existing_file, require, sniff
from lstm_numba.nn.validation import expect_shape, float_array


class ParameterOwner:
    """Owns ``self._params``: name -> live array, updated in place by the optimisers."""

    _params: dict

    @property
    def params(self) -> dict:
        """The live parameter arrays (optimisers update them in place)."""
        return self._params

    def state_dict(self) -> dict:
        """A copy of the parameters."""
        return {key: value.copy() for key, value in self._params.items()}

    def load_state_dict(self, state: dict) -> None:
        """Load parameters by name; keys and shapes must match exactly (nothing changes on error)."""
        load_params(self._params, state)

    def save_safetensors(self, path) -> None:
        """Write the parameters to a safetensors file (atomically), under PyTorch's names, with
        this object's class and config as metadata, from which ``ln.load_safetensors(path)``
        rebuilds it. Needs the extra ``safetensors``."""
        st = require("safetensors.numpy", "safetensors", "safetensors support")
        meta = {"format": SAFETENSORS_FORMAT, "kind": "layer" if hasattr(self, "gate") else "model",
                "class": type(self).__name__, "config": json.dumps(self.config())}
        tensors = {key: np.ascontiguousarray(value) for key, value in self._params.items()}
        path = os.fspath(path)
        directory, name = os.path.split(os.path.abspath(path))
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
        try:
            st.save_file(tensors, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_safetensors(self, path) -> None:
        """Load a safetensors file's parameters in place (keys and shapes must match), e.g. one
        ``safetensors.torch.save_file(torch_lstm.state_dict(), path)`` wrote."""
        tensors, _ = read_safetensors(path)
        try:
            self.load_state_dict(tensors)
        except (ValueError, TypeError) as exc:
            raise InteropError(f"{os.fspath(path)}: {' '.join(str(exc).split())}") from None


#: The ``format`` metadata of the safetensors files :meth:`ParameterOwner.save_safetensors` writes.
SAFETENSORS_FORMAT = "lstm-numba"


def read_safetensors(path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file; an :class:`InteropError` for any other file."""
    require("safetensors.numpy", "safetensors", "safetensors support")
    from safetensors import safe_open

    path = existing_file(path, "a safetensors file")
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError (and others) for foreign files
        detail = " ".join(str(exc).split())[:120]
        raise InteropError(f"{path}: not a safetensors file ({sniff(path)}; {detail})") from None
    return tensors, metadata


def check_live(params: dict, key: str, shape: tuple, dtype) -> None:
    """Raise a ValueError naming ``params[key]`` unless it is a ``dtype`` array of ``shape``.

    The layers read their live parameter arrays as they are (the recurrent kernels from
    compiled code): one put into ``params`` in place of a live array, with another dtype or
    shape, would be read as garbage, out of bounds, or would turn every later result into
    another dtype. ``load_state_dict`` converts new values instead.
    """
    value = params[key]
    if getattr(value, "dtype", None) != dtype or value.shape != shape:
        raise ValueError(f"params[{key!r}]: expected a {dtype} array of shape {shape}, got "
                         f"{getattr(value, 'dtype', type(value).__name__)} {getattr(value, 'shape', '')}"
                         " (load new values with load_state_dict, which converts them)")


def load_params(live: dict, state: dict) -> None:
    """Copy ``state`` into the live parameter arrays ``live``, by name.

    Keys must match exactly and every value must be a finite float array of the live
    array's shape (other float dtypes are converted). Nothing changes on error.
    """
    if not isinstance(state, Mapping):
        raise TypeError(f"state_dict: expected a dict of parameter name -> array (as state_dict() returns), "
                        f"got {type(state).__name__}")
    missing = sorted(set(live) - set(state))
    unexpected = sorted(set(state) - set(live))
    if missing or unexpected:
        raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
    loaded = {}
    for key, current in live.items():
        value = float_array(key, state[key], f"of shape {current.shape}", current.ndim, current.dtype)
        expect_shape(key, value, current.shape, "")
        loaded[key] = value
    for key, value in loaded.items():
        live[key][...] = value
