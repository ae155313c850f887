"""The README's Python example runs as written, and its commands name files that exist."""

import re
import shlex
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


ROOT = README.parent
DATA_SUFFIXES = (".csv", ".txt", ".npz")


def _code_blocks() -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", README.read_text(), flags=re.S)


def _commands(block: str):
    """The ``lstm-numba ...`` commands of a block, as token lists, comments stripped."""
    for line in block.splitlines():
        for part in line.split("#", 1)[0].split("&&"):
            tokens = shlex.split(part)
            if tokens[:1] == ["lstm-numba"]:
                yield tokens


def _train_checkpoint(tokens: list[str]) -> str:
    """The checkpoint a ``lstm-numba train`` command writes (its --out, or the default)."""
    given = {}
    rest = iter(tokens[2:])
    for token in rest:
        if token in ("--out", "--data", "--task", "--metrics"):
            given[token] = next(rest)
        elif not token.startswith("-") and token.endswith(DATA_SUFFIXES):
            given["--data"] = token
    out, data = given.get("--out"), given.get("--data")
    if out:
        return out
    if data:
        return f"runs/{Path(data).stem}.npz"
    return "runs/alice.npz" if given.get("--task") == "charlm" else "runs/co2.npz"


def test_example_files_exist():
    named = {path for block in _code_blocks() for path in re.findall(r"\bexamples/[\w./-]+", block)}
    assert named, "the README's commands lost their example files"
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"README names example files that are not in the repository: {missing}"


def test_runs_references_are_consistent():
    """Every checkpoint a command reads was written by an earlier ``train`` in the README,
    every runs/ path named is one of those or a file under runs/ a command writes, and
    ``predict`` writes under runs/."""
    written, outputs = [], set()
    for block in _code_blocks():
        for tokens in _commands(block):
            command = tokens[1] if len(tokens) > 1 else ""
            if command == "train":
                checkpoint = _train_checkpoint(tokens)
                if "--resume" in tokens:
                    assert checkpoint in written, f"{' '.join(tokens)}: resumes {checkpoint}, which no train wrote"
                written.append(checkpoint)
            elif command in ("predict", "generate"):
                checkpoint = tokens[2]
                assert checkpoint in written, f"{' '.join(tokens)}: reads {checkpoint}, which no earlier train wrote"
                if command == "predict":
                    out = tokens[tokens.index("--out") + 1] if "--out" in tokens else "-"
                    assert out.startswith("runs/"), f"{' '.join(tokens)}: predict examples write under runs/"
                    outputs.add(out)
    named = {path for block in _code_blocks() for path in re.findall(r"\bruns/[\w./-]*\w", block)}
    stray = sorted(named - set(written) - outputs)
    assert not stray, f"README code names runs/ files that no command writes: {stray}"
