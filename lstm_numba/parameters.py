"""Named parameter arrays, shared by the layers and the models."""

from __future__ import annotations

from lstm_numba.validation import expect_shape, float_array


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


def load_params(live: dict, state: dict) -> None:
    """Copy ``state`` into the live parameter arrays ``live``, by name.

    Keys must match exactly and every value must be a finite float array of the live
    array's shape (other float dtypes are converted). Nothing changes on error.
    """
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
