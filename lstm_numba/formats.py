"""What every reader and writer of files shares: the one-line error for a file a format
cannot take, importing an optional extra with the ``pip install`` line that brings it, and
telling what a file looks like. Imports nothing of numba or of the rest of the package.
"""

from __future__ import annotations

import importlib
import os

EXTRA_HINT = 'pip install "lstm-numba[{extra}]"'


class InteropError(ValueError):
    """A file or an object that a format cannot take; the message is one line and names it."""


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str, what: str):
    """Import ``module`` or raise :class:`MissingExtraError` naming ``pip install "lstm-numba[extra]"``."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingExtraError(f"{what} needs the {top!r} package, which is not installed: "
                                f"{EXTRA_HINT.format(extra=extra)}") from None


def existing_file(path, what: str) -> str:
    """``path`` as a string, or an :class:`InteropError` when it is not a readable file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InteropError(f"{path}: no such file" + (" (a directory)" if os.path.isdir(path) else "")
                           + f"; expected {what}")
    return path


def starts_with(path: str, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


def sniff(path: str) -> str:
    """A short name of what ``path`` looks like, for 'this is a ... file, not ...' errors."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (an .npz checkpoint or a .keras file?)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if len(head) >= 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 27:
        return "a safetensors file"
    return "not that format"
