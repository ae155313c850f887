"""Checkpoints: exact roundtrip, atomic writes, and a CheckpointError for every bad file."""

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from lstm_numba.training import checkpoint as ck
from lstm_numba.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_from_json,
    rng_state_to_json,
    save_checkpoint,
)
from lstm_numba.training.optim import Adam

RNG = np.random.default_rng(3)
PARAMS = {
    "weight_ih_l0": RNG.standard_normal((8, 3)).astype(np.float32),
    "weight_hh_l0": RNG.standard_normal((8, 2)),
    "head.weight": RNG.standard_normal((1, 2)).astype(np.float32),
    "scalar": np.array(np.pi),
    "empty": np.zeros((0, 4)),
}
META = {"config": {"hidden": 2, "cell": "lstm", "name": "réseau ☃"},
        "plugins": [{"name": "lstm", "version": "0.1.0"}], "epoch": 3, "loss": 0.25,
        "normalisation": {"mean": [0.5, 1.5], "std": [2.0, 1.0]}}


def assert_same_arrays(got, want):
    assert set(got) == set(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
        assert got[k].tobytes() == want[k].tobytes(), k


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.npz"
    save_checkpoint(path, PARAMS, META)
    return path


def test_roundtrip_is_exact(tmp_path):
    params = {k: v.copy() for k, v in PARAMS.items()}
    opt = Adam(params, lr=0.01, amsgrad=True)
    opt.step({k: np.ones_like(v) for k, v in params.items()})
    extra = {"rng_keys": np.arange(5, dtype=np.uint64), "mask": np.array([True, False])}
    meta = {**META, "epoch": np.int64(3), "loss": np.float32(0.25)}
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, params, meta, optim_state=opt.state_dict(), extra_arrays=extra)

    loaded = load_checkpoint(path)
    assert_same_arrays(loaded.params, params)
    assert_same_arrays(loaded.extra, extra)
    assert loaded.meta == META
    state = opt.state_dict()
    assert_same_arrays({k: v for k, v in loaded.optim_state.items() if "/" in k},
                       {k: v for k, v in state.items() if "/" in k})
    assert {k: v for k, v in loaded.optim_state.items() if "/" not in k} == \
        {k: v for k, v in state.items() if "/" not in k}


def test_file_layout_is_plain_npz(saved):
    with np.load(saved, allow_pickle=False) as npz:
        names = set(npz.files)
        doc = json.loads(npz["__meta__.json"].tobytes().decode("utf-8"))
    assert names == {"__meta__.json"} | {f"param/{k}" for k in PARAMS}
    digest = doc.pop("digest")
    assert doc == {"format": "lstm-numba-checkpoint", "version": 2, "meta": META, "optim": None}
    assert digest["algorithm"] == "sha256/16" and set(digest["arrays"]) == {f"param/{k}" for k in PARAMS}
    assert "/config/cell" in digest["meta"] and "/plugins" in digest["meta"]  # lists are leaves


def test_loaded_checkpoint_resumes_adam_exactly(tmp_path):
    def grads(t):
        return {k: np.full_like(v, 0.1 * (t + 1)) for k, v in PARAMS.items()}

    straight = {k: v.copy() for k, v in PARAMS.items()}
    opt = Adam(straight, lr=0.1)
    for t in range(6):
        opt.step(grads(t))

    params = {k: v.copy() for k, v in PARAMS.items()}
    opt = Adam(params, lr=0.1)
    for t in range(3):
        opt.step(grads(t))
    save_checkpoint(tmp_path / "c.npz", params, {}, optim_state=opt.state_dict())
    loaded = load_checkpoint(tmp_path / "c.npz")
    opt2 = Adam(loaded.params)
    opt2.load_state_dict(loaded.optim_state)
    for t in range(3, 6):
        opt2.step(grads(t))
    assert_same_arrays(loaded.params, straight)


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_rng_state_roundtrips_through_json(tmp_path, bit_generator):
    rng = np.random.Generator(getattr(np.random, bit_generator)(1234))
    rng.standard_normal(7)
    state = json.loads(json.dumps(rng_state_to_json(rng)))
    save_checkpoint(tmp_path / "r.npz", {}, {"rng": state})
    restored = rng_from_json(load_checkpoint(tmp_path / "r.npz").meta["rng"])
    np.testing.assert_array_equal(restored.standard_normal(50), rng.standard_normal(50))
    assert restored.integers(0, 2**62) == rng.integers(0, 2**62)


def test_rng_state_ints_are_json_safe():
    state = rng_state_to_json(np.random.default_rng(2**100))
    text = json.dumps(state)
    assert all(abs(v) < 2**53 for v in _ints(json.loads(text)))
    with pytest.raises(ValueError, match="unknown bit generator 'Evil'"):
        rng_from_json({**state, "bit_generator": "Evil"})


def _ints(obj):
    if isinstance(obj, dict):
        return [i for v in obj.values() for i in _ints(v)]
    if isinstance(obj, list):
        return [i for v in obj for i in _ints(v)]
    return [obj] if isinstance(obj, int) else []


# ---------------------------------------------------------------- atomic writes

def test_failed_write_leaves_old_file_and_no_temp(saved, monkeypatch):
    before = saved.read_bytes()

    def crash_midway(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(ck.np, "savez", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(saved, {"w": np.zeros(3)}, {"epoch": 9})
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]
    monkeypatch.undo()
    assert load_checkpoint(saved).meta == META


def test_failed_rename_leaves_no_temp(saved, monkeypatch):
    before = saved.read_bytes()

    def no_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(ck.os, "replace", no_replace)
    with pytest.raises(OSError, match="rename failed"):
        save_checkpoint(saved, {"w": np.zeros(3)}, {})
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


def test_write_syncs_file_then_renames_then_syncs_directory(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(ck.os, "fsync", fsync)
    monkeypatch.setattr(ck.os, "replace", replace)
    save_checkpoint(tmp_path / "c.npz", PARAMS, META)
    assert events == ["fsync-file", "replace", "fsync-dir"]


def test_unserialisable_input_fails_before_touching_the_file(saved):
    before = saved.read_bytes()
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        save_checkpoint(saved, PARAMS, {"bad": object()})
    with pytest.raises(ValueError, match="object array"):
        save_checkpoint(saved, {"w": np.array([{}, 1], dtype=object)}, {})
    with pytest.raises(TypeError, match="meta must be a dict"):
        save_checkpoint(saved, PARAMS, [1, 2])
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name]


# ---------------------------------------------------------------- corrupt and foreign files

def _npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _meta(doc):
    return np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)


GOOD_DOC = {"format": "lstm-numba-checkpoint", "version": 1, "meta": {}, "optim": None}


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scribble(path):
    """16 bytes inverted in the middle of the metadata member's data (a scribble on a zip's
    local header can leave every member readable and intact: that loads bit-identical)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("__meta__.json.npy")
    data = bytearray(path.read_bytes())
    mid = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "missing": (lambda p: p.unlink(), "file not found"),
    "truncated": (_truncate, "damaged or truncated"),
    "scribbled": (_scribble, "damaged or truncated|unreadable array"),
    "not a zip": (lambda p: p.write_text("hello, I am a text file\n"), "not an npz"),
    "empty file": (lambda p: p.write_bytes(b""), "not an npz"),
    "plain npz": (lambda p: p.write_bytes(_npz_bytes(w=np.zeros(3))), "no __meta__.json"),
    "pickled object": (lambda p: p.write_bytes(_npz_bytes(**{
        "__meta__.json": _meta(GOOD_DOC), "param/w": np.array([{"a": 1}], dtype=object)})),
        "Object arrays cannot be loaded"),
    "wrong version": (lambda p: p.write_bytes(_npz_bytes(**{
        "__meta__.json": _meta({**GOOD_DOC, "version": 99})})), "unsupported version 99"),
    "wrong format": (lambda p: p.write_bytes(_npz_bytes(**{
        "__meta__.json": _meta({**GOOD_DOC, "format": "keras"})})), "format is 'keras'"),
    "invalid json": (lambda p: p.write_bytes(_npz_bytes(**{
        "__meta__.json": np.frombuffer(b"{not json", dtype=np.uint8)})), "invalid metadata JSON"),
    "meta not bytes": (lambda p: p.write_bytes(_npz_bytes(**{
        "__meta__.json": np.zeros(3)})), "not a 1-D uint8"),
    "foreign array": (lambda p: p.write_bytes(_npz_bytes(**{
        "__meta__.json": _meta(GOOD_DOC), "weights": np.zeros(2)})), "unexpected array 'weights'"),
    "orphan optimizer arrays": (lambda p: p.write_bytes(_npz_bytes(**{
        "__meta__.json": _meta(GOOD_DOC), "optim/exp_avg/w": np.zeros(2)})),
        "without optimizer metadata"),
}


@pytest.mark.parametrize("corrupt,match", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_every_bad_file_raises_checkpoint_error_naming_it(saved, corrupt, match):
    corrupt(saved)
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)
    assert info.value.path == str(saved)
    assert isinstance(info.value, ValueError)


def test_scribbled_array_data_fails_crc(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.zeros(10_000)}, {})
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("param/w.npy")
    data = bytearray(path.read_bytes())
    data[info.header_offset + 2000] ^= 0x01  # inside the array's zeros, past its npy header
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        load_checkpoint(path)


def test_directory_is_reported(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path)
