"""Small public-domain datasets shipped inside the package.

Series (CSV with a ``date`` column and one value column):

- ``co2``: monthly mean atmospheric CO2 at Mauna Loa, 1958-03 .. 2001-12, 526 points,
  ppmv, seasonal period 12 (months).

Texts (UTF-8, ``\\n`` line ends):

- ``alice``: Lewis Carroll, *Alice's Adventures in Wonderland*, chapters I-VII (84,443 chars).
- ``constitution``: the Constitution of the United States, main text (26,392 chars).

Where each file comes from, its licence and the exact processing are in ``SOURCES.md``
beside this file.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

import numpy as np

SERIES = ("co2",)
TEXTS = ("alice", "constitution")
DEFAULT_SERIES = "co2"
DEFAULT_TEXT = "alice"
SEASONAL_PERIOD = 12
"""Seasonal period of :data:`DEFAULT_SERIES`, in steps (months)."""


def _resource(name: str, known: tuple[str, ...], kind: str, suffix: str):
    if name not in known:
        raise ValueError(f"unknown {kind} {name!r}; available: {', '.join(known)}")
    return resources.files(__name__).joinpath(name + suffix)


def series_path(name: str = DEFAULT_SERIES) -> str:
    """Filesystem path of the embedded series CSV ``name`` (header ``date,<value>``)."""
    return str(_resource(name, SERIES, "series", ".csv"))


def text_path(name: str = DEFAULT_TEXT) -> str:
    """Filesystem path of the embedded text ``name`` (UTF-8)."""
    return str(_resource(name, TEXTS, "text", ".txt"))


def load_series(name: str = DEFAULT_SERIES) -> tuple[np.ndarray, np.ndarray]:
    """Load an embedded series.

    Returns ``(dates, values)``: ``dates`` a ``(N,)`` array of ``str`` (``"YYYY-MM"``),
    ``values`` a ``(N,)`` float64 array, in time order.
    """
    text = _resource(name, SERIES, "series", ".csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))[1:]
    dates = np.array([r[0] for r in rows], dtype=str)
    values = np.array([float(r[1]) for r in rows], dtype=np.float64)
    return dates, values


def load_text(name: str = DEFAULT_TEXT) -> str:
    """Load an embedded text as one ``str``."""
    return _resource(name, TEXTS, "text", ".txt").read_text(encoding="utf-8")
