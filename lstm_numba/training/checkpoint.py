"""Checkpoints: one ``.npz`` file, written atomically, read without pickle.

Layout of the archive (every member an ``.npy`` array, ``allow_pickle=False``):

- ``param/<name>``: model parameters;
- ``optim/<key>``: the array entries of an optimizer state dict;
- ``extra/<key>``: any other arrays the caller passes;
- ``__meta__.json``: a uint8 array holding a UTF-8 JSON document
  ``{"format": "lstm-numba-checkpoint", "version": 1, "meta": {...}, "optim": {...} | null}``
  where ``meta`` is the caller's metadata and ``optim`` the optimizer state's scalar entries.

``save_checkpoint`` writes a temporary file in the target's directory, fsyncs it, renames it
onto the target and fsyncs the directory, so a crash leaves either the old or the new file.
``load_checkpoint`` raises ``CheckpointError`` (naming the file and the cause) for every way
a file can be missing, damaged or foreign.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FORMAT", "VERSION", "Checkpoint", "CheckpointError",
    "save_checkpoint", "load_checkpoint", "rng_state_to_json", "rng_from_json",
]

FORMAT = "lstm-numba-checkpoint"
VERSION = 1
META_KEY = "__meta__.json"
_PREFIXES = {"param/": "params", "optim/": "optim", "extra/": "extra"}
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read; the message names the file and the cause."""

    def __init__(self, path, cause: str) -> None:
        super().__init__(f"checkpoint {os.fspath(path)!r}: {cause}")
        self.path = os.fspath(path)


@dataclass
class Checkpoint:
    """A loaded checkpoint: parameters, caller metadata, optimizer state, extra arrays."""

    params: dict[str, np.ndarray]
    meta: dict
    optim_state: dict | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _json_default(obj):
    """Let numpy scalars through ``json.dumps``; anything else stays an error."""
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _split_optim_state(optim_state: dict) -> tuple[dict, dict]:
    """Split an optimizer state dict into (scalars, arrays)."""
    scalars, arrays = {}, {}
    for key, value in optim_state.items():
        (arrays if isinstance(value, np.ndarray) else scalars)[key] = value
    return scalars, arrays


def _archive_arrays(params: dict, optim_arrays: dict, extra: dict, meta_doc: bytes) -> dict:
    arrays = {META_KEY: np.frombuffer(meta_doc, dtype=np.uint8)}
    for prefix, group in (("param/", params), ("optim/", optim_arrays), ("extra/", extra)):
        for key, value in group.items():
            if not isinstance(key, str) or not key:
                raise ValueError(f"array names must be non-empty strings, got {key!r}")
            value = np.asarray(value)
            if value.dtype.hasobject:
                raise ValueError(f"{prefix}{key} is an object array; checkpoints hold no pickles")
            arrays[prefix + key] = value
    return arrays


def _fsync_dir(directory: str) -> None:
    """Make a rename durable; platforms that cannot open directories skip it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path, params: dict, meta: dict, optim_state: dict | None = None,
                    extra_arrays: dict | None = None) -> None:
    """Write a checkpoint to ``path`` atomically (temp file, fsync, rename, fsync dir).

    ``meta`` must be JSON-able (numpy scalars are converted). Array entries of
    ``optim_state`` go to ``optim/``, its other entries into the JSON document.
    On any error the previous file at ``path`` is untouched and no temporary file remains.
    """
    path = os.fspath(path)
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    optim_scalars, optim_arrays = (None, {}) if optim_state is None else \
        _split_optim_state(optim_state)
    doc = {"format": FORMAT, "version": VERSION, "meta": meta, "optim": optim_scalars}
    meta_doc = json.dumps(doc, default=_json_default).encode("utf-8")
    arrays = _archive_arrays(params, optim_arrays, extra_arrays or {}, meta_doc)

    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as for an ordinary new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _read_members(path: str) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the zip, CRC-checked, without pickle."""
    with open(path, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise CheckpointError(path, "not an npz (zip) archive")
    member = None
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {}
            for member in zf.namelist():
                if not member.endswith(".npy"):
                    raise CheckpointError(path, f"unexpected member {member!r}")
                # ZipFile.read verifies the CRC; read_array refuses object arrays.
                data = io.BytesIO(zf.read(member))
                arrays[member[:-4]] = np.lib.format.read_array(data, allow_pickle=False)
            return arrays
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise CheckpointError(path, f"damaged or truncated archive ({exc})") from exc
    except ValueError as exc:
        raise CheckpointError(path, f"unreadable array {member!r} ({exc})") from exc


def _read_meta(path: str, raw: np.ndarray | None) -> dict:
    if raw is None:
        raise CheckpointError(path, f"no {META_KEY}: not an lstm-numba checkpoint")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(path, f"{META_KEY} is not a 1-D uint8 array")
    try:
        doc = json.loads(raw.tobytes().decode("utf-8"))
    except ValueError as exc:
        raise CheckpointError(path, f"invalid metadata JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(path, f"format is {found!r}, expected {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise CheckpointError(
            path, f"unsupported version {doc.get('version')!r} (this reader handles {VERSION})")
    optim = doc.get("optim")
    if not isinstance(doc.get("meta"), dict) or not (optim is None or isinstance(optim, dict)):
        raise CheckpointError(path, "metadata lacks a 'meta' object or has a bad 'optim' entry")
    return doc


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``; raise ``CheckpointError`` on any fault."""
    path = os.fspath(path)
    try:
        arrays = _read_members(path)
    except FileNotFoundError as exc:
        raise CheckpointError(path, "file not found") from exc
    except OSError as exc:
        raise CheckpointError(path, f"cannot read ({exc})") from exc
    doc = _read_meta(path, arrays.pop(META_KEY, None))

    groups: dict[str, dict] = {"params": {}, "optim": {}, "extra": {}}
    for key, array in arrays.items():
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(path, f"unexpected array {key!r}")
        groups[_PREFIXES[prefix]][key[len(prefix):]] = array
    if doc.get("optim") is None and groups["optim"]:
        raise CheckpointError(path, "optimizer arrays present without optimizer metadata")
    optim_state = None if doc.get("optim") is None else {**doc["optim"], **groups["optim"]}
    return Checkpoint(params=groups["params"], meta=doc["meta"],
                      optim_state=optim_state, extra=groups["extra"])


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
_SAFE_INT = 2 ** 53


def _encode(obj):
    """numpy state -> JSON: arrays become tagged lists, ints beyond 2**53 decimal strings."""
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": _encode(obj.tolist()), "dtype": obj.dtype.str}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        obj = int(obj)
        return obj if abs(obj) < _SAFE_INT else {"__int__": str(obj)}
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if "__int__" in obj:
            return int(obj["__int__"])
        if "__ndarray__" in obj:
            return np.array(_decode(obj["__ndarray__"]), dtype=np.dtype(obj["dtype"]))
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def rng_state_to_json(rng: np.random.Generator) -> dict:
    """The generator's bit-generator state as a JSON-able dict (exact, portable ints)."""
    return _encode(rng.bit_generator.state)


def rng_from_json(state: dict) -> np.random.Generator:
    """A new ``Generator`` in the state saved by ``rng_state_to_json``."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {name!r}; known: {', '.join(_BIT_GENERATORS)}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = _decode(state)
    return np.random.Generator(bit_generator)
