"""Checkpoints: one ``.npz`` file, written atomically, read without pickle.

Layout of the archive (every member an ``.npy`` array, ``allow_pickle=False``):

- ``param/<name>``: model parameters;
- ``optim/<key>``: the array entries of an optimizer state dict;
- ``extra/<key>``: any other arrays the caller passes;
- ``__meta__.json``: a uint8 array holding a UTF-8 JSON document
  ``{"format": "lstm-numba-checkpoint", "version": 1, "meta": {...}, "optim": {...} | null}``
  where ``meta`` is the caller's metadata and ``optim`` the optimizer state's scalar entries.

Version 2 adds ``"digest"``: a SHA-256 (first 16 hex digits) of every leaf of ``meta``
(``"/model/activation"``, a JSON pointer; lists are leaves), of the ``optim`` scalars and
of every array (its dtype, shape and bytes). ``load_checkpoint`` recomputes them and
refuses a file whose metadata or arrays were edited after writing, naming the field or
array; the zip's CRCs already catch damage, the digests catch edits that leave a valid
archive (a hand-edited JSON member, an array rewritten with ``np.savez``). Version 1 files
(no digest) still load.

``save_checkpoint`` writes a temporary file in the target's directory
(``.<name>.<host>-<pid>.<hex>.tmp``), fsyncs it, renames it onto the target and fsyncs the
directory, so a crash leaves either the old or the new file. A kill during the write
leaves the temporary file behind; the next write to the same target (and
:func:`clean_stale_temps`, which training calls when it starts) removes those whose writer
process is gone (or, for files of another host or an older version, that are over
``STALE_TEMP_AGE`` seconds old).

``load_checkpoint`` raises ``CheckpointError`` (naming the file and the cause) for every way
a file can be missing, damaged, edited or foreign: it reads every member's ``.npy`` header
itself and refuses one whose shape does not match the bytes it holds before allocating
anything, refuses encrypted or oddly compressed members and metadata nested too deeply.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import secrets
import socket
import time
import zipfile
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FORMAT", "VERSION", "Checkpoint", "CheckpointError",
    "save_checkpoint", "load_checkpoint", "clean_stale_temps", "rng_state_to_json", "rng_from_json",
]

FORMAT = "lstm-numba-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
META_KEY = "__meta__.json"
_DOC_KEYS = {1: {"format", "version", "meta", "optim"}, 2: {"format", "version", "meta", "optim", "digest"}}
#: Seconds after which a temporary file whose writer cannot be asked is taken as stale.
STALE_TEMP_AGE = 600.0
#: Deepest nesting of the metadata JSON accepted (the writer's is a few levels).
MAX_JSON_DEPTH = 64
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
    # The digests are of what a reader will see: the JSON round trip of meta and optim
    plain = json.loads(json.dumps({"meta": meta, "optim": optim_scalars}, default=_json_default))
    arrays = _archive_arrays(params, optim_arrays, extra_arrays or {}, b"")
    arrays.pop(META_KEY)
    doc = {"format": FORMAT, "version": VERSION, "meta": plain["meta"], "optim": plain["optim"],
           "digest": _digests(plain["meta"], plain["optim"], arrays)}
    meta_doc = json.dumps(doc).encode("utf-8")
    arrays = {META_KEY: np.frombuffer(meta_doc, dtype=np.uint8), **arrays}

    directory, name = os.path.split(os.path.abspath(path))
    clean_stale_temps(path)
    tmp = os.path.join(directory, f".{name}.{_HOST}-{os.getpid()}.{secrets.token_hex(8)}.tmp")
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


# ---------------------------------------------------------------- temporary files

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _temp_pattern(name: str):
    return re.compile(rf"\.{re.escape(name)}\.(?:([0-9a-f]{{8}})-(\d+)\.)?[0-9a-f]{{16}}\.tmp")


def _writer_gone(host: str | None, pid: str | None, age: float) -> bool:
    """Whether the process that wrote a temporary file is certainly gone (or it is old)."""
    if age > STALE_TEMP_AGE:
        return True
    if host != _HOST or pid is None or os.name != "posix" or int(pid) == os.getpid():
        return False  # another host's, an older version's, or ours (a thread may be writing it)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False
    return False


def clean_stale_temps(path) -> list[str]:
    """Remove the temporary files that killed writes of ``path`` left behind; returns their
    paths. A temporary file whose writer may still be running is left alone."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = _temp_pattern(name)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    now = time.time()
    for entry in names:
        found = pattern.fullmatch(entry)
        if not found:
            continue
        full = os.path.join(directory, entry)
        try:
            age = now - os.stat(full).st_mtime
            if _writer_gone(found.group(1), found.group(2), age):
                os.unlink(full)
                removed.append(full)
        except OSError:  # gone already, or not ours to remove
            continue
    return removed


# ---------------------------------------------------------------- digests

def _leaf_digest(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _pointer(parts) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _flatten(value, parts=()):
    """(JSON pointer, leaf) pairs: dicts are walked, everything else (lists too) is a leaf."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, parts + (key,))
    else:
        yield _pointer(parts), value


def _array_digest(array: np.ndarray) -> str:
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    if array.size and array.dtype.itemsize:
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return digest.hexdigest()[:16]


def _digests(meta, optim, arrays: dict) -> dict:
    return {"algorithm": "sha256/16",
            "meta": {pointer: _leaf_digest(leaf) for pointer, leaf in _flatten(meta)},
            "optim": None if optim is None else _leaf_digest(optim),
            "arrays": {key: _array_digest(value) for key, value in arrays.items()}}


def _field_name(pointer: str) -> str:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
    return ".".join(["meta", *parts])


def _verify_digests(path: str, doc: dict, arrays: dict) -> None:
    """Refuse a version-2 file whose metadata or arrays differ from what was written."""
    recorded = doc["digest"]
    if (not isinstance(recorded, dict) or recorded.get("algorithm") != "sha256/16"
            or not isinstance(recorded.get("meta"), dict) or not isinstance(recorded.get("arrays"), dict)):
        raise CheckpointError(path, "the 'digest' entry of the metadata is malformed")
    edited = "changed after the file was written (its digest differs from the recorded one); " \
             "the checkpoint was edited or damaged"
    current = dict(_flatten(doc["meta"]))
    for pointer in sorted(set(current) | set(recorded["meta"])):
        if pointer not in recorded["meta"]:
            raise CheckpointError(path, f"{_field_name(pointer)} was added after the file was written; "
                                        "the checkpoint was edited or damaged")
        if pointer not in current:
            raise CheckpointError(path, f"{_field_name(pointer)} was removed after the file was written; "
                                        "the checkpoint was edited or damaged")
        if _leaf_digest(current[pointer]) != recorded["meta"][pointer]:
            raise CheckpointError(path, f"{_field_name(pointer)} {edited}")
    optim = doc["optim"]
    if (None if optim is None else _leaf_digest(optim)) != recorded.get("optim"):
        raise CheckpointError(path, f"the optimizer state {edited}")
    for key in sorted(set(arrays) | set(recorded["arrays"])):
        if key not in arrays or key not in recorded["arrays"]:
            what = "is missing" if key not in arrays else "was added after the file was written"
            raise CheckpointError(path, f"array {key!r} {what}; the checkpoint was edited or damaged")
        if _array_digest(arrays[key]) != recorded["arrays"][key]:
            raise CheckpointError(path, f"array {key!r} {edited}")


# ---------------------------------------------------------------- reading

def _read_npy(path: str, member: str, data: bytes) -> np.ndarray:
    """One ``.npy`` member, its header checked against its bytes before anything is allocated."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise CheckpointError(path, f"array {member!r}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise CheckpointError(path, f"array {member!r}: Object arrays cannot be loaded (checkpoints hold no pickles)")
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise CheckpointError(path, f"array {member!r}: invalid shape {shape!r}")
    count = math.prod(shape)
    body = len(data) - stream.tell()
    if count * dtype.itemsize != body:
        raise CheckpointError(path, f"array {member!r}: its header claims shape {shape} {dtype} "
                                    f"({count * dtype.itemsize} bytes) but it holds {body} bytes")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran else "C").copy(order="K")


def _read_members(path: str) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the zip, CRC-checked, without pickle."""
    with open(path, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise CheckpointError(path, "not an npz (zip) archive")
    size = os.path.getsize(path)
    member = None
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {}
            for info in zf.infolist():
                member = info.filename
                if not member.endswith(".npy"):
                    raise CheckpointError(path, f"unexpected member {member!r}")
                if member[:-4] in arrays:
                    raise CheckpointError(path, f"member {member!r} appears twice")
                if info.flag_bits & 0x1:
                    raise CheckpointError(path, f"member {member!r} is marked encrypted; checkpoints never are "
                                                "(damaged archive)")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise CheckpointError(path, f"member {member!r} uses compression method "
                                                f"{info.compress_type}; expected stored or deflated")
                # A stored member holds its bytes in the file; a deflated one at most ~1032x
                limit = size if info.compress_type == zipfile.ZIP_STORED else 1032 * max(info.compress_size, 1)
                if info.file_size > limit or info.compress_size > size:
                    raise CheckpointError(path, f"member {member!r} claims {info.file_size} bytes, more than "
                                                f"the {size}-byte file can hold (damaged archive)")
                # ZipFile.read verifies the CRC
                arrays[member[:-4]] = _read_npy(path, member, zf.read(info))
            return arrays
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged zip can fail in many ways (BadZipFile, zlib, EOF, ...)
        where = f" in member {member!r}" if member else ""
        raise CheckpointError(path, f"damaged or truncated archive{where} "
                                    f"({type(exc).__name__}: {_one_line(exc)})") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def _json_depth_ok(text: str) -> bool:
    """Whether no bracket nesting in ``text`` goes deeper than MAX_JSON_DEPTH (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _read_meta(path: str, raw: np.ndarray | None) -> dict:
    if raw is None:
        raise CheckpointError(path, f"no {META_KEY}: not an lstm-numba checkpoint")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(path, f"{META_KEY} is not a 1-D uint8 array")
    try:
        text = raw.tobytes().decode("utf-8")
    except ValueError as exc:
        raise CheckpointError(path, f"invalid metadata JSON ({_one_line(exc)})") from exc
    if not _json_depth_ok(text):
        raise CheckpointError(path, f"invalid metadata JSON (nested deeper than {MAX_JSON_DEPTH} levels)")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CheckpointError(path, f"invalid metadata JSON ({_one_line(exc)})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CheckpointError(path, f"format is {found!r}, expected {FORMAT!r}")
    version = doc.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise CheckpointError(
            path, f"unsupported version {version!r} (this reader handles "
                  f"{', '.join(map(str, READABLE_VERSIONS))})")
    if set(doc) != _DOC_KEYS[version]:
        odd = sorted(set(doc) ^ _DOC_KEYS[version])
        raise CheckpointError(path, f"the version-{version} metadata document has the wrong entries "
                                    f"(unexpected or missing: {', '.join(map(repr, odd))})")
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
    if doc["version"] >= 2:
        _verify_digests(path, doc, arrays)

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
