"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_usage_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    usage = [b for b in blocks if "import lstm_numba as ln" in b]
    assert usage, "the README lost its usage example"
    namespace = {}
    exec(compile(usage[0], "README.md", "exec"), namespace)
    assert namespace["y"].shape == (50, 16, 128)
    assert namespace["h_n"].shape == (4, 16, 64)
    assert namespace["g"].x.shape == (50, 16, 8)
