"""The package's wings and the one direction of their imports (docs/architecture.md)."""

import ast
from pathlib import Path

import lstm_numba

PACKAGE = Path(lstm_numba.__file__).parent

#: Wing -> rank: a module may import its own wing and those of lower rank only.
RANK = {"config": 0, "contract": 0, "registry": 0, "datasets": 0, "formats": 0, "interop": 5, "engine": 1, "nn": 2, "training": 3,
        "profiling": 4, "plugin_check": 4}


def _wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "lstm_numba" else None


def _imports(path: Path):
    """(line, imported lstm_numba module) for every import in the file, at any depth."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lstm_numba":
            if node.module == "lstm_numba":
                for alias in node.names:
                    yield node.lineno, f"lstm_numba.{alias.name}"
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "lstm_numba":
                    yield node.lineno, alias.name


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        yield path, ".".join(relative.parts).removesuffix(".__init__")


def test_every_module_belongs_to_a_wing():
    for path, module in _modules():
        if module != "lstm_numba":
            assert _wing(module) in RANK, module


def test_imports_run_one_way():
    upward = []
    for path, module in _modules():
        if module == "lstm_numba":  # the public names, loaded lazily
            continue
        rank = RANK[_wing(module)]
        for line, target in _imports(path):
            wing = _wing(target)
            if wing is None or RANK[wing] > rank or (RANK[wing] == rank and wing != _wing(module) and rank > 0):
                upward.append(f"{module}:{line} imports {target}")
    assert upward == []


def test_kernels_import_only_compiled_code_the_fastmath_policy_and_the_fast_math_helpers():
    for path in sorted((PACKAGE / "engine" / "kernels").glob("*.py")):
        for line, target in _imports(path):
            assert target.startswith("lstm_numba.engine.kernels") or target in ("lstm_numba.config",
                                                                              "lstm_numba.contract"), (path.name, target)


def test_every_compiled_kernel_releases_the_gil():
    """Kernels run without the GIL, so that a Dask worker's or a user's other threads do not
    wait on a whole sequence (helpers inlined into the kernels are not called on their
    own)."""
    import numba

    from lstm_numba import registry
    from lstm_numba.engine import codegen
    from lstm_numba.engine.kernels import arrays, gemm

    act, ract = registry.get_activation("tanh"), registry.get_activation("sigmoid")
    kernels = codegen.load_kernels(registry.get_gate("lstm"), act, (act.obj.alpha, act.obj.beta),
                                   ract, (ract.obj.alpha, ract.obj.beta), "float32").module
    found = 0
    for module in (arrays, gemm, kernels):
        for name, obj in vars(module).items():
            if (isinstance(obj, numba.core.registry.CPUDispatcher)
                    and obj.targetoptions.get("inline") != "always"):
                assert obj.targetoptions.get("nogil") is True, (module.__name__, name)
                found += 1
    assert found >= 10


def test_public_names_resolve_and_the_package_import_loads_no_numba():
    import subprocess
    import sys

    code = ("import sys, lstm_numba as ln\n"
            "assert not any(m == 'numba' or m.startswith('numba.') for m in sys.modules)\n"
            "print(sorted(n for n in ln.__all__ if getattr(ln, n) is None))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
