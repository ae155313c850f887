"""``lstm-numba train``, ``predict`` and ``generate`` through Click's CliRunner (help, real
short runs, one-line errors) and through the installed console script."""

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from lstm_numba_cli.main import cli
from train_helpers import (
    console_script,
    with_plugin,
    write_labelled,
    write_series,
    write_text,
)

COMMANDS = ("train", "predict", "generate")
TINY = ["--window", "12", "--horizon", "3", "--hidden-size", "8", "--batch-size", "16"]


def invoke(args, **kw):
    return CliRunner().invoke(cli, [str(a) for a in args], **kw)


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.stderr
    assert "Traceback" not in result.output
    errors = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in errors if "NumbaPerformanceWarning" not in line and not line.startswith(" ")
              and not line.startswith("compiling kernels for ")]
    assert len(errors) == 1 and errors[0].startswith("Error: "), text
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


# ----------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_option_with_help_text(command):
    result = invoke([command, "--help"])
    assert result.exit_code == 0
    cmd = cli.get_command(None, command)
    for param in cmd.params:
        if isinstance(param, __import__("click").Option):
            assert param.help, f"{command} {param.name} has no help text"
            assert param.opts[-1] in result.output


def test_help_states_the_task_defaults_the_trainer_uses():
    import click

    from lstm_numba.training.config import TASK_DEFAULTS

    options = {p.name: p for p in cli.get_command(None, "train").params if isinstance(p, click.Option)}
    for key in ("window", "hidden_size", "epochs", "lr", "patience"):
        for task, defaults in TASK_DEFAULTS.items():
            value = defaults[key]
            if value is None and key == "window":
                continue
            assert f"{value or 0} ({task})" in options[key].help or f"{value}." in options[key].help, (key, task)


def test_help_does_not_import_numba():
    """The options' choices and defaults come from ``lstm_numba.training.config`` and
    ``optim``, which import no numba (the package's public names load lazily)."""
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from lstm_numba_cli.main import cli\n"
            "for c in ('train', 'predict', 'generate'):\n"
            "    assert CliRunner().invoke(cli, [c, '--help']).exit_code == 0\n"
            "print(any(m == 'numba' or m.startswith('numba.') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_options_share_the_library_choices():
    import click

    from lstm_numba.training import config, optim

    options = {p.name: p for p in cli.get_command(None, "train").params if isinstance(p, click.Option)}
    assert list(options["task"].type.choices) == list(config.TASK_DEFAULTS)
    assert set(options["optimizer"].type.choices) == set(optim.OPTIMIZERS)
    assert list(options["schedule"].type.choices) == list(config.SCHEDULES)
    for name in ("layers", "gate", "activation", "dropout", "dtype", "seed", "momentum"):
        assert options[name].default == getattr(config.TrainConfig(), name), name


# ----------------------------------------------------------------------------- real runs


def test_forecast_train_then_predict(tmp_path):
    data = write_series(tmp_path / "s.csv", n=120)
    out, metrics = tmp_path / "runs" / "f.npz", tmp_path / "m.csv"
    result = invoke(["train", data, *TINY, "--epochs", "3", "--out", out, "--metrics", metrics])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "epoch   1/3" in text and "seq/s" in text
    assert "naive last value" in text and "RMSE" in text and f"checkpoint: {out}" in text
    assert out.exists()
    rows = list(csv.DictReader(metrics.open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and float(rows[0]["seq_per_s"]) > 0

    pred = tmp_path / "p.csv"
    result = invoke(["predict", out, "--out", pred])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(pred.open()))
    assert rows[0] == ["step", "date", "temp"] and len(rows) == 4
    assert rows[1][1] == "2010-01" and rows[3][1] == "2010-03"  # the months after the data
    assert 5 < float(rows[1][2]) < 30  # original units
    # stdout, and a longer series given with --data
    more = write_series(tmp_path / "more.csv", n=130)
    result = invoke(["predict", out, "--data", more])
    assert result.exit_code == 0
    assert list(csv.reader(io.StringIO(result.stdout)))[1][1] == "2010-11"


def test_env_var_sets_an_option(tmp_path):
    data = write_series(tmp_path / "s.csv", n=100)
    result = invoke(["train", data, *TINY, "--out", tmp_path / "e.npz"],
                    env={"LSTM_NUMBA_TRAIN_EPOCHS": "1"}, auto_envvar_prefix="LSTM_NUMBA")
    assert result.exit_code == 0, result.output
    assert "up to 1 epochs" in result.stdout and "done: 1 epochs" in result.stdout


def test_charlm_train_then_generate(tmp_path):
    text = write_text(tmp_path / "book.txt", 2500)
    out = tmp_path / "lm.npz"
    result = invoke(["train", text, "--window", "16", "--hidden-size", "16", "--epochs", "1",
                     "--batch-size", "4", "--out", out, "--metrics", tmp_path / "m.jsonl"])
    assert result.exit_code == 0, result.output
    assert "character LM" in result.stdout and "bits/char" in result.stdout and "sample: " in result.stdout

    args = ["generate", out, "--length", "40", "--temperature", "0.9", "--seed", "5", "--prime", "Alice"]
    first, second = invoke(args), invoke(args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout and first.stdout.startswith("Alice")
    assert len(first.stdout.rstrip("\n")) == len("Alice") + 40
    other = invoke(args[:-3] + ["6", "--prime", "Alice"])
    assert other.stdout != first.stdout


def test_classify_train_then_predict_probabilities(tmp_path):
    data = write_labelled(tmp_path / "l.npz")
    out = tmp_path / "c.npz"
    result = invoke(["train", data, "--hidden-size", "8", "--epochs", "3", "--batch-size", "8",
                     "--bidirectional", "--out", out])
    assert result.exit_code == 0, result.output
    assert "classify into 2 classes" in result.stdout and "accuracy" in result.stdout
    result = invoke(["predict", out])
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["sequence", "label", "predicted", "p_0", "p_1"] and len(rows) == 61
    assert all(abs(float(r[3]) + float(r[4]) - 1) < 1e-4 for r in rows[1:])
    with np.load(data) as z:
        np.savez(tmp_path / "unlabelled.npz", x=z["x"][:5], lengths=z["lengths"][:5])
    result = invoke(["predict", out, "--data", tmp_path / "unlabelled.npz"])
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["sequence", "predicted", "p_0", "p_1"] and len(rows) == 6


def test_resume_keeps_settings_and_finished_runs_have_nothing_to_do(tmp_path):
    data = write_series(tmp_path / "s.csv", n=100)
    out = tmp_path / "r.npz"
    assert invoke(["train", data, *TINY, "--epochs", "1", "--out", out]).exit_code == 0
    result = invoke(["train", data, "--hidden-size", "9", "--out", out, "--resume"])
    assert_one_line_error(result, "--hidden-size 9 differs from the checkpoint's 8")
    result = invoke(["train", "--out", out, "--resume"])
    assert result.exit_code == 0 and "already finished at epoch 1; nothing to resume" in result.stdout


def test_default_run_beats_the_naive_forecasts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["train", "--quiet"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "co2" in text and "seasonal naive (period 12)" in text
    assert "the model beats every naive forecast" in text, text
    assert (tmp_path / "runs" / "co2.npz").exists()
    result = invoke(["predict", "runs/co2.npz"])
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["step", "date", "co2"] and rows[1][1] == "2002-01" and len(rows) == 13
    assert 360 < float(rows[1][2]) < 385


def test_default_checkpoint_follows_the_data_and_another_run_is_not_overwritten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_series(tmp_path / "sales.csv", n=80)
    assert invoke(["train", data, *TINY, "--epochs", "1", "-q"]).exit_code == 0
    written = tmp_path / "runs" / "sales.npz"
    before = written.read_bytes()
    # the same task on the same data may run again; another data set may not overwrite it
    assert invoke(["train", data, *TINY, "--epochs", "1", "-q"]).exit_code == 0
    (tmp_path / "other").mkdir()
    other = write_series(tmp_path / "other" / "sales.csv", n=80, seed=1)
    result = invoke(["train", other, *TINY, "--epochs", "1", "-q"])
    assert_one_line_error(result, str(written.relative_to(tmp_path)), "forecast run on", "--resume", "--force")
    assert written.exists()
    written_after_refusal = written.read_bytes()
    assert invoke(["train", other, *TINY, "--epochs", "1", "-q", "--force"]).exit_code == 0
    assert written.read_bytes() != written_after_refusal
    (tmp_path / "runs" / "junk.npz").write_bytes(b"not a checkpoint")
    result = invoke(["train", data, *TINY, "--epochs", "1", "-q", "--out", "runs/junk.npz"])
    assert_one_line_error(result, "runs/junk.npz", "not a training checkpoint", "--force")
    assert before[:2] == b"PK"


def test_default_checkpoint_names():
    from lstm_numba.training.config import default_checkpoint

    assert default_checkpoint("forecast", None) == os.path.join("runs", "co2.npz")
    assert default_checkpoint("charlm", None) == os.path.join("runs", "alice.npz")
    assert default_checkpoint("classify", "/data/x/labelled.npz") == os.path.join("runs", "labelled.npz")


# ----------------------------------------------------------------------------- bad input


def _bad_inputs(tmp_path):
    (tmp_path / "nonnum.csv").write_text("date,a\n2000-01,1\n2000-02,x\n")
    (tmp_path / "nan.csv").write_text("date,a\n2000-01,1\n2000-02,nan\n")
    (tmp_path / "short.csv").write_text("date,a\n" + "".join(f"2000-{i:02d},{i}\n" for i in range(1, 10)))
    (tmp_path / "two.csv").write_text("a,b\n" + "1,2\n" * 50)
    (tmp_path / "bad.npz").write_bytes(b"this is not a checkpoint")
    (tmp_path / "book.txt").write_bytes(b"\xff\xfe\x00bad")
    return [
        (["train", tmp_path / "missing.csv"], ["missing.csv", "no such file"]),
        (["train", tmp_path / "nonnum.csv"], ["non-numeric value 'x'", "'a'", "line 3"]),
        (["train", tmp_path / "nan.csv"], ["nan.csv", "line 3"]),
        (["train", tmp_path / "short.csv"], ["short.csv", "too short", "window 24"]),
        (["train", tmp_path / "short.csv", "--target", "b"], ["no column 'b'", "available"]),
        (["train", tmp_path / "two.csv"], ["choose", "--target"]),
        (["train", "--gate", "nope"], ["unknown gate 'nope'"]),
        (["train", "--activation", "swishy"], ["unknown activation 'swishy'"]),
        (["train", "--window", "0"], ["--window"]),
        (["train", tmp_path / "book.txt"], ["book.txt", "UTF-8"]),
        (["train", "--task", "classify"], ["labelled data"]),
        (["train", "--metrics", tmp_path / "m.txt", "--epochs", "1"], [".csv or .jsonl"]),
        (["predict", tmp_path / "bad.npz"], ["bad.npz", "not an npz"]),
        (["predict", tmp_path / "none.npz"], ["none.npz", "file not found"]),
        (["generate", tmp_path / "bad.npz"], ["bad.npz"]),
    ]


def test_bad_inputs_give_one_clear_line(tmp_path):
    for args, fragments in _bad_inputs(tmp_path):
        assert_one_line_error(invoke(args), *fragments)


def test_checkpoint_of_the_wrong_kind_or_missing_plugin(tmp_path):
    data = write_series(tmp_path / "s.csv", n=100)
    out = tmp_path / "f.npz"
    assert invoke(["train", data, *TINY, "--epochs", "1", "--out", out]).exit_code == 0
    assert_one_line_error(invoke(["generate", out]), "forecast model", "character LM")
    bad = tmp_path / "plug.npz"
    with_plugin(out, bad, "zoneout_lstm")
    for args in (["predict", bad], ["train", "--out", bad, "--resume"]):
        assert_one_line_error(invoke(args), "plug.npz", "zoneout_lstm")
    result = invoke(["generate", tmp_path / "lm.npz"])
    assert_one_line_error(result, "lm.npz")


# ----------------------------------------------------------------------------- console script


def test_console_script_runs_trains_and_fails_cleanly(tmp_path):
    exe = console_script()
    help_ = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "--hidden-size" in help_.stdout
    data = write_series(tmp_path / "s.csv", n=100)
    run = subprocess.run([exe, "train", data, *TINY, "--epochs", "2", "--out", str(tmp_path / "x.npz")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "epoch   2/2" in run.stdout and "RMSE" in run.stdout
    bad = subprocess.run([exe, "train", str(tmp_path / "nope.csv")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [f"Error: {tmp_path / 'nope.csv'}: no such file"]


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal_shows_loss_and_throughput(tmp_path):
    exe = console_script()
    data = write_series(tmp_path / "s.csv", n=100)
    master, slave = os.openpty()
    proc = subprocess.Popen([exe, "train", data, *TINY, "--epochs", "2", "--out", str(tmp_path / "x.npz")],
                            stdout=slave, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=300)
    os.close(master)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0
    assert "epoch 1/2" in out and "seq/s" in out and "loss " in out and "RMSE" in out
