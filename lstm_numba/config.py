"""Project-wide settings: the one fastmath policy and where generated kernels live.

The fastmath flags leave out ``nnan`` and ``ninf`` so that NaN and Inf checks keep working
inside kernels, and so that a NaN produced by a diverging run is never optimised away.
They also leave out ``reassoc``: with it LLVM may reorder sums differently in a kernel
compiled in this process and in the same kernel loaded from Numba's disk cache, and
measured, a freshly compiled ``backward_parts`` and its cached copy then gave gradients
that differed in the last bit for the same inputs. Results must not depend on whether
the cache was warm.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

#: The single fastmath policy used by every kernel, generated or not.
FASTMATH = {"nsz", "arcp", "contract", "afn"}

#: Environment variable that overrides the directory of generated kernel modules.
CACHE_DIR_ENV = "LSTM_NUMBA_CACHE_DIR"


def kernel_cache_dir() -> Path:
    """Directory for generated kernel modules and their Numba cache files.

    ``$LSTM_NUMBA_CACHE_DIR`` wins; otherwise ``$XDG_CACHE_HOME/lstm_numba`` or
    ``~/.cache/lstm_numba``.
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lstm_numba"


def package_version() -> str:
    """The installed distribution's version (one source: ``pyproject.toml``)."""
    return metadata.version("lstm-numba")
