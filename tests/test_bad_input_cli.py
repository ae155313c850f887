"""Bad input on the command line: one line ``Error: ...`` naming the option or file, never a
traceback, an ``internal error`` or Click's three-line usage block."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from lstm_numba_cli.main import cli
from test_cli_train import TINY, assert_one_line_error
from train_helpers import write_labelled, write_series


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="lstm-numba")

USAGE_ERRORS = [
    (["bogus"], ["No such command 'bogus'", "(see 'lstm-numba --help')"]),
    (["--bogus"], ["No such option '--bogus'", "(see 'lstm-numba --help')"]),
    (["profile", "--bogus"], ["No such option '--bogus'", "(see 'lstm-numba profile --help')"]),
    (["profile", "-H", "0"], ["'-H' / '--hidden-size'", "0 is not in the range x>=1"]),
    (["plugins", "bogus"], ["No such command 'bogus'", "(see 'lstm-numba plugins --help')"]),
    (["plugins", "check"], ["Missing argument 'NAME'", "(see 'lstm-numba plugins check --help')"]),
    (["plugins", "list", "--kind", "x"], ["'--kind'", "'x' is not one of"]),
    (["train", "--bogus"], ["No such option '--bogus'", "(see 'lstm-numba train --help')"]),
]


@pytest.mark.parametrize("args, fragments", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_everywhere(args, fragments):
    result = invoke(args)
    assert result.exit_code == 2
    assert "Usage:" not in result.output and "Try '" not in result.output
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("args", [[], ["plugins"]])
def test_a_group_without_a_command_still_shows_its_help(args):
    result = invoke(args)
    assert "Usage: lstm-numba" in result.output and "Commands:" in result.output


def test_profile_of_a_layer_too_large_for_memory_is_one_line():
    result = invoke(["profile", "-H", "1000000", "-I", "1", "-T", "2", "-B", "1", "--no-torch", "--no-compile",
                     "--repeat", "1"])
    assert result.exit_code == 1
    line = assert_one_line_error(result, "hidden_size=1000000", "the parameters", "would need about",
                                 "of memory")
    assert "Traceback" not in result.output and "MemoryError" not in line


def test_train_with_a_hidden_size_too_large_for_memory_is_one_line(tmp_path):
    data = write_series(tmp_path / "s.csv", n=60)
    result = invoke(["train", data, "--window", "6", "--horizon", "2", "--hidden-size", "1000000",
                     "--out", tmp_path / "x.npz"])
    line = assert_one_line_error(result, "hidden_size=1000000", "would need about", "of memory")
    assert "internal error" not in line


def test_any_memory_error_is_one_line(tmp_path, monkeypatch):
    from lstm_numba.training import trainer

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 5.00 TiB for an array with shape (10, 10) and data type float64")

    monkeypatch.setattr(trainer.Trainer, "__init__", no_memory)
    result = invoke(["train", write_series(tmp_path / "s.csv", n=60)])
    line = assert_one_line_error(result, "out of memory: Unable to allocate 5.00 TiB")
    assert "internal error" not in line


def test_a_truncated_labelled_npz_names_the_file(tmp_path):
    good = write_labelled(tmp_path / "labelled.npz")
    data = (tmp_path / "labelled.npz").read_bytes()
    cut = tmp_path / "labelled_truncated.npz"
    cut.write_bytes(data[: len(data) // 2])
    (tmp_path / "text.npz").write_text("not numpy at all\n")
    assert_one_line_error(invoke(["train", cut]), str(cut), "not a readable .npz archive", "BadZipFile")
    assert_one_line_error(invoke(["train", tmp_path / "text.npz"]), "text.npz", "not an .npz archive (no zip header)")
    assert good


def test_an_infinite_learning_rate_is_refused_by_name(tmp_path):
    data = write_series(tmp_path / "s.csv", n=60)
    result = invoke(["train", data, *TINY, "--lr", "inf", "--out", tmp_path / "x.npz"])
    assert_one_line_error(result, "lr must be a finite number > 0, got inf")


def test_a_diverging_run_is_reported_as_divergence(tmp_path):
    data = write_series(tmp_path / "s.csv", n=100)
    out = tmp_path / "x.npz"
    result = invoke(["train", data, *TINY, "--lr", "1e30", "--clip-grad", "0", "--epochs", "2", "--out", out])
    line = assert_one_line_error(result, "training diverged at epoch 1, step", "the loss is",
                                 "no epoch completed, so no checkpoint was written")
    assert "dy:" not in line and not out.exists()
