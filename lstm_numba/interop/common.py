"""What the format modules share beyond :mod:`lstm_numba.formats`: walking a layer or
model down to its recurrent layer and heads."""

from __future__ import annotations

from lstm_numba.formats import (
    InteropError,
    MissingExtraError,
    existing_file,
    require,
    sniff,
    starts_with,
)

__all__ = ["InteropError", "MissingExtraError", "describe", "existing_file", "is_layer", "is_model", "require",
           "sniff", "starts_with"]


def is_layer(obj) -> bool:
    from lstm_numba.nn.layers import LSTM

    return isinstance(obj, LSTM)


def is_model(obj) -> bool:
    from lstm_numba.nn.models import _RecurrentModel

    return isinstance(obj, _RecurrentModel)


def describe(obj) -> str:
    return type(obj).__name__
