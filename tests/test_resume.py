"""Kill a real training process with SIGKILL after it has written the checkpoint of an epoch,
resume it with ``--resume``, and check that it ends with bitwise the same weights, optimizer
state, RNG state and history as a run that was never interrupted."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from train_helpers import console_script, write_series

from lstm_numba.training import checkpoint as ck

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")

KILL_AFTER = 3
EPOCHS = 30


def _args(data, out, metrics):
    return [data, "--window", "16", "--horizon", "4", "--hidden-size", "24", "--layers", "2",
            "--dropout", "0.2", "--batch-size", "8", "--epochs", str(EPOCHS), "--patience", "0", "--seed", "5",
            "--out", str(out), "--metrics", str(metrics)]


def _rows(path):
    rows = [json.loads(line) for line in open(path)]
    for row in rows:  # wall-clock fields differ between runs
        row.pop("seconds")
        row.pop("seq_per_s")
    return rows


def test_sigkill_mid_training_then_resume_matches_uninterrupted_run(tmp_path):
    exe = console_script()
    data = write_series(tmp_path / "s.csv", n=400)
    full, cut = tmp_path / "full.npz", tmp_path / "cut.npz"
    full_log, cut_log = tmp_path / "full.jsonl", tmp_path / "cut.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # One run at a time: two processes whose Numba threads share two cores slow each other
    # down many times over.
    reference = subprocess.run([exe, "train", *_args(data, full, full_log)], env=env,
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    victim = subprocess.Popen([exe, "train", *_args(data, cut, cut_log)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The metrics row of an epoch is written after its checkpoint: once KILL_AFTER rows
    # exist, the checkpoint of epoch KILL_AFTER (or later) is on disk. Kill at once.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        if cut_log.exists() and len(cut_log.read_text().splitlines()) >= KILL_AFTER:
            break
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL, "the run ended before it could be killed"

    killed = ck.load_checkpoint(cut)
    epoch = killed.meta["progress"]["epoch"]
    assert KILL_AFTER <= epoch < EPOCHS and not killed.meta["progress"]["finished"]

    resumed = subprocess.run([exe, "train", "--out", str(cut), "--resume", "--metrics", str(cut_log)],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {cut} at epoch {epoch + 1}" in resumed.stdout

    a, b = ck.load_checkpoint(cut), ck.load_checkpoint(full)
    assert a.meta["progress"]["finished"] and a.meta["progress"]["epoch"] == EPOCHS
    assert set(a.params) == set(b.params)
    for key in b.params:
        assert a.params[key].tobytes() == b.params[key].tobytes(), key
    for key, value in b.optim_state.items():
        if isinstance(value, np.ndarray):
            assert a.optim_state[key].tobytes() == value.tobytes(), key
        else:
            assert a.optim_state[key] == value, key
    for key in b.extra:
        assert a.extra[key].tobytes() == b.extra[key].tobytes(), key
    assert a.meta["rng"] == b.meta["rng"] and a.meta["progress"] == b.meta["progress"]
    strip = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "seq_per_s")} for r in h]  # noqa: E731
    assert strip(a.meta["history"]) == strip(b.meta["history"])
    # the metrics log of the resumed run is rewritten from the checkpoint, then continued
    assert _rows(cut_log) == _rows(full_log)
