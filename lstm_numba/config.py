"""Project-wide settings: the one fastmath policy, where generated kernels and Numba's
cache files live, and the logger that tells a user what a first run is compiling.

The fastmath flags leave out ``nnan`` and ``ninf`` so that NaN and Inf checks keep working
inside kernels, and so that a NaN produced by a diverging run is never optimised away.
They also leave out ``reassoc``: with it LLVM may reorder sums differently in a kernel
compiled in this process and in the same kernel loaded from Numba's disk cache, and
measured, a freshly compiled ``backward_parts`` and its cached copy then gave gradients
that differed in the last bit for the same inputs. Results must not depend on whether
the cache was warm.
"""

from __future__ import annotations

import contextlib
import logging
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


#: The library's logger: compile notices go to it at INFO (the CLI shows them on stderr).
LOG = logging.getLogger("lstm_numba")


@contextlib.contextmanager
def numba_cache_in_kernel_dir():
    """While inside, ``cache=True`` kernels being defined keep their Numba cache files in
    ``kernel_cache_dir() / "numba"`` instead of a ``__pycache__`` beside their source (in
    site-packages). Numba picks a function's cache location when it is decorated, so the
    engine's kernel modules are imported inside this. A ``NUMBA_CACHE_DIR`` the user set wins.
    """
    import numba

    if numba.config.CACHE_DIR:
        yield
        return
    numba.config.CACHE_DIR = str(kernel_cache_dir() / "numba")
    try:
        yield
    finally:
        numba.config.CACHE_DIR = ""


def package_version() -> str:
    """The installed distribution's version (one source: ``pyproject.toml``)."""
    return metadata.version("lstm-numba")
