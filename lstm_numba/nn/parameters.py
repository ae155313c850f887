"""Named parameter arrays, shared by the layers and the models."""

from __future__ import annotations

from collections.abc import Mapping

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
