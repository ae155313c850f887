"""The interop wing stays out of the way: ``import lstm_numba`` imports no format package,
``lstm-numba export --help`` and ``plot --help`` import neither numba nor the formats, and
the public functions resolve lazily."""

import subprocess
import sys

HEAVY = ("numba", "onnx", "onnxruntime", "keras", "tensorflow", "h5py", "safetensors", "matplotlib", "torch")


def _imported(code: str) -> list:
    probe = code + f"\nimport sys; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return eval(out.strip().splitlines()[-1])


def test_package_import_loads_no_format_package():
    assert _imported("import lstm_numba as ln; ln.save_safetensors; ln.export_onnx; ln.load_onnx; "
                     "ln.load_keras; ln.load_safetensors") == ["numba"]


def test_help_of_the_new_commands_imports_nothing_heavy():
    code = ("from click.testing import CliRunner\nfrom lstm_numba_cli.main import cli\n"
            "for c in ([], ['export', '--help'], ['plot', '--help']):\n"
            "    r = CliRunner().invoke(cli, c + (['--help'] if not c else []))\n"
            "    assert r.exit_code == 0, r.output\n"
            "    assert not c or '--opset' in r.output or '--size' in r.output\n")
    assert _imported(code) == []


def test_main_help_lists_export_and_plot():
    from click.testing import CliRunner
    from lstm_numba_cli.main import cli

    out = CliRunner().invoke(cli, ["--help"]).output
    assert "export" in out and "ONNX" in out and "plot" in out
