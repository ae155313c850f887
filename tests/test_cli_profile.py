"""``lstm-numba profile``: help without numba, a tiny real run, checkpoints, one-line errors.

No timing is asserted: only that every phase is reported with sane, positive numbers.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from lstm_numba_cli.main import cli

from lstm_numba.engine import tiling

TINY = ["-T", "3", "-B", "2", "-I", "3", "-H", "4", "--repeat", "1"]
PHASES = ("input_gemm", "forward_kernel", "forward_other", "backward_kernel", "backward_gemms", "backward_other",
          "optimizer")


def test_help_does_not_import_numba():
    code = ("import sys; from click.testing import CliRunner; from lstm_numba_cli.main import cli; "
            "r = CliRunner().invoke(cli, ['profile', '--help']); assert r.exit_code == 0, r.output; "
            "print(r.output); print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False"
    text = "\n".join(lines)
    for flag in ("-T, --steps", "-B, --batch", "-I, --input-size", "-H, --hidden-size", "--layers", "--gate",
                 "--dtype", "--repeat", "--json", "--checkpoint"):
        assert flag in text


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def invoke_json(args):
    result = CliRunner().invoke(cli, ["profile", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_tiny_real_run_json():
    doc = invoke_json(TINY)
    cfg = doc["config"]
    assert (cfg["steps"], cfg["batch"], cfg["input_size"], cfg["hidden_size"]) == (3, 2, 3, 4)
    assert cfg["gate"] == "lstm" and cfg["dtype"] == "float32" and cfg["num_layers"] == 1
    # compile: cold and cached, each a fresh process.
    for key in ("cold", "cached"):
        for field in ("import_s", "forward_s", "backward_s", "first_call_s", "process_s"):
            assert _positive(doc["compile"][key][field]), (key, field)
    assert _positive(doc["compile_cold_s"]) and _positive(doc["compile_cached_s"])
    # phases: the kernels ran (hooked), the rest is non-negative up to timer noise.
    assert set(doc["phases_ms"]) == set(PHASES)
    fused = tiling.choose_tiling(True, True, 2, 3, 4, 16, 4).fused_input  # the input projection runs in the loop
    kernels = ("forward_kernel", "backward_kernel", "backward_gemms", "optimizer")
    for phase in kernels if fused else kernels + ("input_gemm",):
        assert _positive(doc["phases_ms"][phase]), phase
    for phase in ("forward_other", "backward_other"):
        assert doc["phases_ms"][phase] > -1.0
    for key in ("forward_ms", "backward_ms", "forward_backward_ms", "iteration_ms", "inference_ms", "peak_gflops"):
        assert _positive(doc[key]), key
    assert doc["iteration_ms"] >= doc["optimizer_ms"]
    for key in ("inference", "forward", "forward_backward"):
        assert _positive(doc["gflops"][key]) and _positive(doc["percent_of_peak"][key])
    assert doc["forward_gflop"] == pytest.approx(2 * 3 * 2 * 16 * (3 + 4) / 1e9)
    assert doc["threads"]["numba"] >= 1
    assert any(row["user_api"] == "blas" for row in doc["blas"])
    assert doc["blas_not_held_by_engine"] == []
    torch = doc["torch"]
    try:
        import torch as _  # noqa: F401
    except ImportError:
        assert torch["available"] is False and torch["note"]
    else:
        assert torch["available"] is True
        assert torch["max_abs_diff_forward"] < 1e-5
        assert _positive(torch["ratio_forward_backward"]) and _positive(torch["ratio_inference"])
        for mode in ("forward_backward", "inference"):  # both timed in the same alternating blocks
            assert _positive(torch[f"ours_{mode}_ms"])
            assert torch[f"ratio_{mode}"] == pytest.approx(torch[f"{mode}_ms"] / torch[f"ours_{mode}_ms"])
        assert torch["sampling"]["rounds"] == 1 and torch["threads"] == doc["threads"]["numba"]


def test_table_output_gru_float64():
    result = CliRunner().invoke(cli, ["profile", *TINY, "--gate", "gru", "--dtype", "float64", "--layers", "2",
                                      "--no-compile"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "gate=gru dtype=float64" in out and "layers=2" in out
    for label in ("input GEMM", "forward kernel", "backward kernel", "backward GEMMs", "optimizer step",
                  "iteration", "peak float64 matmul", "threads: numba"):
        assert label in out, label
    assert "compile, cold" not in out  # --no-compile


def test_no_torch_note():
    doc = invoke_json([*TINY, "--no-compile", "--no-torch"])
    assert doc["torch"] == {"available": False, "note": "skipped (--no-torch)"}
    assert doc["compile"] is None


def test_peephole_has_no_torch_equivalent():
    doc = invoke_json([*TINY, "--no-compile", "--gate", "peephole"])
    assert doc["torch"]["available"] is False
    assert "peephole" in doc["torch"]["note"] or "torch is not installed" in doc["torch"]["note"]


def one_line_error(args, code=1):
    result = CliRunner().invoke(cli, ["profile", *args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_unknown_gate_one_line():
    result = CliRunner().invoke(cli, ["profile", *TINY, "--gate", "nosuchgate"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --gate:"), result.output
    assert "nosuchgate" in lines[0] and "lstm" in lines[0]  # names the installed ones


@pytest.mark.parametrize("args, flag", [(["-H", "0"], "-H"), (["-T", "-1"], "-T"), (["--repeat", "0"], "--repeat"),
                                        (["-B", "x"], "-B")])
def test_bad_sizes(args, flag):
    line = one_line_error(args, code=2)
    assert flag in line


def test_bad_dtype():
    assert "--dtype" in one_line_error(["--dtype", "float16"], code=2)


def test_missing_checkpoint(tmp_path):
    line = one_line_error(["--checkpoint", str(tmp_path / "nope.npz")])
    assert "file not found" in line


def test_garbage_checkpoint(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"this is not a checkpoint")
    assert "not an npz" in one_line_error(["--checkpoint", str(path)])


def test_checkpoint_that_is_not_a_training_checkpoint(tmp_path):
    from lstm_numba.training.checkpoint import save_checkpoint

    path = tmp_path / "noconfig.npz"
    save_checkpoint(path, {"w": np.zeros(3)}, {"something": {"else": 1}})
    line = one_line_error(["--checkpoint", str(path)])
    assert str(path) in line and "not a training checkpoint" in line


def test_checkpoint_with_model_options_is_usage_error(tmp_path):
    line = one_line_error(["--checkpoint", str(tmp_path / "x.npz"), "-H", "8"], code=2)
    assert "--hidden-size" in line and "--checkpoint" in line


def _train_checkpoint(tmp_path):
    """A real ``lstm-numba train`` checkpoint: a 2-layer GRU forecaster, window 6, batch 4."""
    from lstm_numba import TrainConfig, Trainer

    data = tmp_path / "s.csv"
    data.write_text("v\n" + "\n".join(str(np.sin(i / 3)) for i in range(40)) + "\n")
    path = tmp_path / "forecast.npz"
    cfg = TrainConfig(data=str(data), window=6, horizon=2, hidden_size=5, layers=2, gate="gru",
                      epochs=1, batch_size=4, seed=7)
    trainer = Trainer(cfg)
    trainer.fit(checkpoint=path)
    return path, trainer.model


def test_checkpoint_profile(tmp_path):
    path, model = _train_checkpoint(tmp_path)
    doc = invoke_json(["--checkpoint", str(path), "--repeat", "1", "--no-compile", "--no-torch"])
    cfg = doc["config"]
    assert (cfg["gate"], cfg["input_size"], cfg["hidden_size"], cfg["num_layers"]) == ("gru", 1, 5, 2)
    assert (cfg["steps"], cfg["batch"]) == (6, 4)  # the training window and batch size
    assert any("weights loaded" in note for note in doc["notes"]), doc["notes"]
    assert _positive(doc["phases_ms"]["forward_kernel"])

