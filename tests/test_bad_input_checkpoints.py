"""Damaged, edited and foreign checkpoints: every one is refused with a CheckpointError
naming the file (and the field), or loads bit-identical; stale temporary files go.

One tiny forecaster run (two epochs, so that the file holds a best epoch, a history, an
optimizer state and a schedule) is the source of every case.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lstm_numba_cli.main import cli
from train_helpers import write_labelled, write_series

from lstm_numba.training import checkpoint as ck
from lstm_numba.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from lstm_numba.training.config import TrainConfig
from lstm_numba.training.trainer import (
    Callbacks,
    Trainer,
    load_trained,
    read_training_checkpoint,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    path = root / "run.npz"
    Trainer(TrainConfig(data=write_series(root / "s.csv", n=80), window=8, horizon=2, hidden_size=3,
                        epochs=2, batch_size=64, seed=0)).fit(checkpoint=path)
    return path


@pytest.fixture(scope="module")
def original(run):
    return load_checkpoint(run)


def _rewrite(src, dst, edit):
    """A consistent edit: load, change, save with save_checkpoint (digests recomputed)."""
    c = load_checkpoint(src)
    meta, optim_state, extra = json.loads(json.dumps(c.meta)), dict(c.optim_state), dict(c.extra)
    edit(meta, optim_state, extra)
    save_checkpoint(dst, c.params, meta, optim_state, extra)
    return dst


def _members(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _write_members(path, members: dict) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _doc(path) -> dict:
    raw = np.load(io.BytesIO(_members(path)["__meta__.json.npy"]))
    return json.loads(raw.tobytes())


def _raw_edit(src, dst, edit_doc):
    """An edit that leaves a valid archive but does not update the digests (by hand)."""
    members = _members(src)
    doc = json.loads(np.load(io.BytesIO(members["__meta__.json.npy"])).tobytes())
    edit_doc(doc)
    members["__meta__.json.npy"] = _npy(np.frombuffer(json.dumps(doc).encode(), np.uint8))
    _write_members(dst, members)
    return dst


def _refused(path, *fragments, loader=read_training_checkpoint):
    with pytest.raises(CheckpointError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and info.value.path == str(path), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ----------------------------------------------------------------------------- the schema

def _set(section, key, value):
    def edit(meta, optim_state, extra):
        meta[section][key] = value
    return edit


def _set_everywhere(key, value, train_key=None):
    def edit(meta, optim_state, extra):
        meta["model"][key] = meta["model"]["rnn"][key] = value
        meta["train"][train_key or key] = value
    return edit


def _drop_best(meta, optim_state, extra):
    for key in [k for k in extra if k.startswith("best/")]:
        del extra[key]


def _set_optim(key, value):
    def edit(meta, optim_state, extra):
        optim_state[key] = value
    return edit


SCHEMA_CASES = {
    "activation changed": (_set("model", "activation", "relu"), ["model.rnn.activation", "model.activation",
                                                                  "'relu'"]),
    "plugin changed": (lambda m, o, e: m["plugins"]["activation"].update(name="relu"),
                       ["plugins.activation.name is 'relu' but model.activation is 'tanh'"]),
    "window -1": (_set("data", "window", -1), ["data.window: expected an integer >= 1, got -1"]),
    "train window -1": (_set("train", "window", -1), ["train.window: expected an integer >= 1 or null, got -1"]),
    "dtype changed": (_set_everywhere("dtype", "float64"), ["param/rnn.weight_ih_l0 is float32, but model.dtype "
                                                            "is 'float64'"]),
    "epoch abc": (_set("progress", "epoch", "abc"), ["progress.epoch: expected an integer >= 0, got 'abc'"]),
    "epoch -5": (_set("progress", "epoch", -5), ["progress.epoch: expected an integer >= 0, got -5"]),
    "step 1.5": (_set("progress", "step", 1.5), ["progress.step: expected an integer >= 2, got 1.5"]),
    "best_val x": (_set("progress", "best_val", "x"), ["progress.best_val: expected a finite number", "got 'x'"]),
    "best missing": (_drop_best, ["progress.best_epoch is", "best weights (extra/best/...) are missing"]),
    "epochs 0": (_set("train", "epochs", 0), ["train.epochs: expected an integer >= 1, got 0"]),
    "unknown optimizer": (_set("train", "optimizer", "rmsprop"), ["train.optimizer: expected one of 'adam', "
                                                                  "'adamw', 'sgd', got 'rmsprop'"]),
    "lr -1": (_set("train", "lr", -1), ["train.lr: expected a finite number > 0.0, got -1"]),
    "optimizer lr -1": (_set_optim("lr", -1), ["optim.lr: expected a finite number >= 0.0, got -1"]),
    "hidden_size 10**6": (_set_everywhere("hidden_size", 10 ** 6),
                          ["param/rnn.weight_ih_l0 has shape (12, 1)", "model.hidden_size=1000000",
                           "implies (4000000, 1)"]),
    "num_layers 10**7": (_set_everywhere("num_layers", 10 ** 7, "layers"),
                         ["implies 40000002 parameter arrays, the file holds 6"]),
    "target_index 5": (_set("data", "target_index", 5), ["data.target_index: expected an integer >= 0 and <= 0, "
                                                         "got 5"]),
    "history cut": (lambda m, o, e: m["history"].pop(), ["history has 1 records but progress.epoch is 2"]),
    "rng garbage": (lambda m, o, e: m["rng"].update(shuffle={"bit_generator": "PCG64", "state": 3}),
                    ["rng.shuffle: not a random generator state"]),
    "unknown model field": (_set("model", "layer_norm", 0.1), ["model: unexpected 'layer_norm'"]),
}


@pytest.mark.parametrize("edit, fragments", SCHEMA_CASES.values(), ids=SCHEMA_CASES.keys())
def test_edited_metadata_is_refused_naming_the_file_and_the_field(run, tmp_path, edit, fragments):
    bad = _rewrite(run, tmp_path / "edited.npz", edit)
    start = time.perf_counter()
    _refused(bad, *fragments)
    _refused(bad, *fragments, loader=load_trained)
    _refused(bad, *fragments, loader=Trainer.resume)
    assert time.perf_counter() - start < 5  # nothing of the claimed size was built


def test_a_consistent_rewrite_still_loads(run, tmp_path):
    same = _rewrite(run, tmp_path / "same.npz", lambda m, o, e: None)
    assert read_training_checkpoint(same).meta == load_checkpoint(run).meta


def test_predict_with_an_out_of_range_target_index_prints_one_line(run, tmp_path):
    bad = _rewrite(run, tmp_path / "target.npz", _set("data", "target_index", 5))
    result = CliRunner().invoke(cli, ["predict", str(bad)])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Error: checkpoint '{bad}': data.target_index: expected an integer >= 0 and <= 0, got 5"]


def test_classify_and_charlm_checkpoints_pass_the_schema(tmp_path):
    for task, cfg in (("classify", TrainConfig(data=write_labelled(tmp_path / "l.npz", n=20), hidden_size=3,
                                               epochs=1)),
                      ("charlm", TrainConfig(task="charlm", hidden_size=4, window=8, epochs=1, embedding_dim=0,
                                             batch_size=64))):
        out = tmp_path / f"{task}.npz"
        Trainer(cfg).fit(checkpoint=out)
        assert read_training_checkpoint(out).meta["task"] == task
    bad = _rewrite(tmp_path / "charlm.npz", tmp_path / "vocab.npz",
                   lambda m, o, e: m["data"]["vocab"]["chars"].pop())
    _refused(bad, "data.vocab.chars is", "model.vocab_size")


# ----------------------------------------------------------------------------- digests

def test_a_hand_edit_of_the_json_is_refused_naming_the_field(run, tmp_path):
    for pointer, value, field in ((("meta", "model", "activation"), "relu", "meta.model.activation"),
                                  (("meta", "progress", "epoch"), 7, "meta.progress.epoch"),
                                  (("meta", "history"), [], "meta.history")):
        def edit(doc, pointer=pointer, value=value):
            target = doc
            for key in pointer[:-1]:
                target = target[key]
            target[pointer[-1]] = value
        bad = _raw_edit(run, tmp_path / "hand.npz", edit)
        _refused(bad, f"{field} changed after the file was written", loader=load_checkpoint)
    bad = _raw_edit(run, tmp_path / "added.npz", lambda doc: doc["meta"]["model"].update(layer_norm=0.1))
    _refused(bad, "meta.model.layer_norm was added after the file was written", loader=load_checkpoint)
    bad = _raw_edit(run, tmp_path / "optim.npz", lambda doc: doc["optim"].update(lr=5.0))
    _refused(bad, "the optimizer state changed", loader=load_checkpoint)


def test_an_array_rewritten_without_its_digest_is_refused(run, tmp_path):
    members = _members(run)
    weights = np.load(io.BytesIO(members["param/rnn.weight_hh_l0.npy"]))
    members["param/rnn.weight_hh_l0.npy"] = _npy(weights * 2)
    _write_members(tmp_path / "arrays.npz", members)
    _refused(tmp_path / "arrays.npz", "array 'param/rnn.weight_hh_l0' changed after the file was written",
             loader=load_checkpoint)


def test_a_version_1_file_without_digests_still_loads_and_is_schema_checked(run, tmp_path):
    def to_v1(doc):
        doc["version"] = 1
        del doc["digest"]
    old = _raw_edit(run, tmp_path / "v1.npz", to_v1)
    assert read_training_checkpoint(old).meta == load_checkpoint(run).meta
    bad = _raw_edit(run, tmp_path / "v1bad.npz", lambda doc: (to_v1(doc), doc["meta"]["train"].update(epochs=0)))
    _refused(bad, "train.epochs: expected an integer >= 1, got 0")
    mixed = _raw_edit(run, tmp_path / "mixed.npz", lambda doc: doc.update(version=1))
    _refused(mixed, "version-1 metadata document has the wrong entries", "'digest'", loader=load_checkpoint)


# ----------------------------------------------------------------------------- damaged archives

def _flip_encrypted_flag(path, member: str) -> None:
    """Set bit 0 (encrypted) of the general-purpose flags in ``member``'s local and central
    headers, as one flipped bit in each would."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, flags_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        start = 0
        while (start := data.find(signature, start)) != -1:
            if data[start + name_at:start + name_at + len(name)] == name:
                data[start + flags_at] |= 0x1
            start += 4
    path.write_bytes(bytes(data))


def test_a_member_marked_encrypted_is_refused(run, tmp_path):
    (tmp_path / "enc.npz").write_bytes(run.read_bytes())
    _flip_encrypted_flag(tmp_path / "enc.npz", "param/head.bias.npy")
    _refused(tmp_path / "enc.npz", "member 'param/head.bias.npy' is marked encrypted", loader=load_checkpoint)


def test_a_header_claiming_a_huge_shape_is_refused_before_allocating(run, tmp_path):
    members = _members(run)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)})
    members["param/head.bias.npy"] = header.getvalue() + b"\0" * 8  # the header writes the magic too
    _write_members(tmp_path / "huge.npz", members)
    start = time.perf_counter()
    _refused(tmp_path / "huge.npz", "array 'param/head.bias.npy': its header claims shape (1000000000000,) float32",
             "but it holds 8 bytes", loader=load_checkpoint)
    assert time.perf_counter() - start < 2


def test_json_nested_200000_deep_is_refused(run, tmp_path):
    members = _members(run)
    deep = '{"format": "lstm-numba-checkpoint", "version": 2, "meta": ' + "[" * 200_000 + "]" * 200_000 + "}"
    members["__meta__.json.npy"] = _npy(np.frombuffer(deep.encode(), np.uint8))
    _write_members(tmp_path / "deep.npz", members)
    _refused(tmp_path / "deep.npz", "invalid metadata JSON (nested deeper than 64 levels)", loader=load_checkpoint)


def test_duplicate_and_oddly_compressed_members_are_refused(run, tmp_path):
    members = _members(run)
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(tmp_path / "dup.npz", "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
            zf.writestr("param/head.bias.npy", members["param/head.bias.npy"])
    _refused(tmp_path / "dup.npz", "member 'param/head.bias.npy' appears twice", loader=load_checkpoint)
    with zipfile.ZipFile(tmp_path / "bz.npz", "w", zipfile.ZIP_BZIP2) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    _refused(tmp_path / "bz.npz", "uses compression method 12", loader=load_checkpoint)


# ----------------------------------------------------------------------------- the corruption property

def _same(loaded, original) -> bool:
    def arrays_equal(a, b):
        return set(a) == set(b) and all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
                                        and a[k].tobytes() == b[k].tobytes() for k in a)
    optim_a = {k: v for k, v in loaded.optim_state.items() if isinstance(v, np.ndarray)}
    optim_b = {k: v for k, v in original.optim_state.items() if isinstance(v, np.ndarray)}
    scalars_a = {k: v for k, v in loaded.optim_state.items() if k not in optim_a}
    scalars_b = {k: v for k, v in original.optim_state.items() if k not in optim_b}
    return (loaded.meta == original.meta and scalars_a == scalars_b and arrays_equal(loaded.params, original.params)
            and arrays_equal(loaded.extra, original.extra) and arrays_equal(optim_a, optim_b))


def _check_refused_or_identical(path, original):
    try:
        loaded = read_training_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
        return "refused"
    assert _same(loaded, original), "a damaged checkpoint loaded with different contents"
    return "identical"


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20), st.floats(allow_nan=False),
                         st.text(max_size=5), st.lists(st.integers(0, 3), max_size=3))


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow,
                                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_damaged_file_is_refused_naming_it_or_loads_bit_identical(run, original, tmp_path, data):
    blob = run.read_bytes()
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete", "json", "array"]))
    path = tmp_path / "damaged.npz"
    if kind == "flip":
        damaged = bytearray(blob)
        for _ in range(data.draw(st.integers(1, 3))):
            damaged[data.draw(st.integers(0, len(blob) - 1))] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(damaged))
    elif kind == "truncate":
        path.write_bytes(blob[:data.draw(st.integers(0, len(blob) - 1))])
    elif kind in ("insert", "delete"):
        at = data.draw(st.integers(0, len(blob) - 1))
        extra = bytes([data.draw(st.integers(0, 255))]) if kind == "insert" else b""
        path.write_bytes(blob[:at] + extra + blob[at + (kind == "delete"):])
    elif kind == "json":
        doc = _doc(run)
        leaves = sorted(pointer for pointer, _ in ck._flatten(doc))
        pointer = data.draw(st.sampled_from(leaves))
        value = data.draw(_JSON_VALUES)
        parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]
        target = doc
        for key in parts[:-1]:
            target = target[key]
        if target[parts[-1]] == value:
            value = ["changed"]
        target[parts[-1]] = value
        _raw_edit(run, path, lambda d: (d.clear(), d.update(doc)))
    else:
        members = _members(run)
        name = data.draw(st.sampled_from(sorted(k for k in members if k != "__meta__.json.npy")))
        array = np.load(io.BytesIO(members[name]))
        change = data.draw(st.sampled_from(["value", "dtype", "shape"]))
        if change == "value" and array.size:
            array = array.copy()
            array.flat[data.draw(st.integers(0, array.size - 1))] += 1
        elif change == "dtype":
            array = array.astype(np.float64 if array.dtype != np.float64 else np.float32)
        else:
            array = array.reshape(-1)[:-1] if array.size > 1 else np.zeros(2, array.dtype)
        members[name] = _npy(array)
        _write_members(path, members)
    outcome = _check_refused_or_identical(path, original)
    if kind in ("json", "array"):
        assert outcome == "refused"


# ----------------------------------------------------------------------------- temporary files

def test_the_temp_file_of_a_killed_write_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "run.npz"
    code = (
        "import os, signal, sys, numpy as np\n"
        "from lstm_numba.training import checkpoint as ck\n"
        "def dying_savez(f, **arrays):\n"
        "    f.write(b'PK\\x03\\x04 half a zip'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "ck.np.savez = dying_savez\n"
        f"ck.save_checkpoint({str(target)!r}, {{'w': np.zeros(3)}}, {{}})\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".run.npz.")
    legacy = tmp_path / ".run.npz.0123456789abcdef.tmp"  # an older version's name: no pid
    legacy.write_bytes(b"old")
    os.utime(legacy, (time.time() - 2 * ck.STALE_TEMP_AGE,) * 2)
    fresh_legacy = tmp_path / ".run.npz.fedcba9876543210.tmp"
    fresh_legacy.write_bytes(b"maybe still being written")
    alive = tmp_path / f".run.npz.{ck._HOST}-{os.getppid()}.00112233445566ff.tmp"  # a live writer's
    alive.write_bytes(b"in progress")
    other = tmp_path / ".other.npz.0123456789abcdef.tmp"
    other.write_bytes(b"another target's")
    os.utime(other, (time.time() - 2 * ck.STALE_TEMP_AGE,) * 2)

    save_checkpoint(target, {"w": np.ones(3)}, {"epoch": 1})
    assert sorted(os.listdir(tmp_path)) == sorted([target.name, fresh_legacy.name, alive.name, other.name])
    assert load_checkpoint(target).meta == {"epoch": 1}


class _SeeTemps(Callbacks):
    def epoch_start(self, trainer, epoch, n_batches):
        self.seen = sorted(os.listdir(self.directory))


def test_training_cleans_stale_temps_when_it_starts(tmp_path):
    out = tmp_path / "runs" / "f.npz"
    out.parent.mkdir()
    stale = out.parent / f".f.npz.{ck._HOST}-999999999.0123456789abcdef.tmp"  # no such pid
    stale.write_bytes(b"x")
    see = _SeeTemps()
    see.directory = out.parent
    Trainer(TrainConfig(data=write_series(tmp_path / "s.csv", n=60), window=6, horizon=2, hidden_size=3,
                        epochs=1, batch_size=64)).fit(checkpoint=out, callbacks=see)
    assert see.seen == [] and sorted(os.listdir(out.parent)) == ["f.npz"]
