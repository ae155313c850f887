"""``lstm-numba plot``: a valid PNG of the stated size, not blank, for the loss curve and
each task's picture; one-line errors."""

import struct
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from interop_helpers import train_checkpoints
from lstm_numba_cli.main import cli

pytest.importorskip("matplotlib")

PICTURES = {"forecast": "forecast.png", "classify": "confusion.png", "charlm": "charlm.png"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return train_checkpoints(tmp_path_factory.mktemp("runs"), names=tuple(PICTURES))


def assert_png(path, width, height):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (width, height)
    from matplotlib.image import imread

    pixels = imread(str(path))[..., :3]
    assert pixels.shape[:2] == (height, width)
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 20 and pixels.std() > 0.05, "blank picture"
    # drawn all over, not a strip: every quarter of the picture has ink
    for rows in np.array_split(pixels, 2, axis=0):
        for part in np.array_split(rows, 2, axis=1):
            assert (part < 0.9).any()


@pytest.mark.parametrize("task", list(PICTURES))
def test_plot_writes_the_loss_and_the_task_picture(tmp_path, checkpoints, task):
    out = tmp_path / "plots"
    result = CliRunner().invoke(cli, ["plot", str(checkpoints[task]), "--out", str(out), "--size", "640x400"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(["loss.png", PICTURES[task]])
    for name in ("loss.png", PICTURES[task]):
        assert_png(out / name, 640, 400)
        assert f"{name} (640x400)" in result.output


def test_errors_are_one_line(tmp_path, checkpoints, monkeypatch):
    def error(args):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        return lines[0]

    assert "WIDTHxHEIGHT" in error(["plot", str(checkpoints["forecast"]), "--size", "big"])
    assert "missing.npz" in error(["plot", str(tmp_path / "missing.npz")])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert 'pip install "lstm-numba[plot]"' in error(["plot", str(checkpoints["forecast"]), "--out", str(tmp_path)])
