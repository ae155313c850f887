"""The generated kernels' file name (``lstm_numba.engine.codegen``): Numba's disk cache is
keyed on that file, so its hash must change with any source the kernels compile in."""

import inspect

import pytest

from lstm_numba import config, contract
from lstm_numba.engine import codegen
from lstm_numba.engine.kernels import blas, gemm, views

PLUGINS = ("lstm_numba_plugins.gates.lstm", "lstm_numba_plugins.activations")


@pytest.fixture(scope="module")
def generated():
    ref = codegen.PluginRef
    return codegen.generate_source(ref("lstm", "lstm_numba_plugins.gates.lstm:gate"),
                                   ref("tanh", "lstm_numba_plugins.activations:tanh"), (0.0, 0.0),
                                   ref("sigmoid", "lstm_numba_plugins.activations:sigmoid"), (0.0, 0.0), "float32")


def test_cache_key_is_stable(generated):
    assert codegen._source_hash(generated, PLUGINS) == codegen._source_hash(generated, PLUGINS)


@pytest.mark.parametrize("module", [config, contract, blas, gemm, views], ids=lambda m: m.__name__)
def test_cache_key_follows_every_engine_module_the_kernels_compile_in(generated, monkeypatch, module):
    before = codegen._source_hash(generated, PLUGINS)
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: real(obj) + ("# edited\n" if obj is module else ""))
    assert codegen._source_hash(generated, PLUGINS) != before


def test_cache_key_ignores_the_tiling_policy(generated, monkeypatch):
    """Every shape-to-block decision lives in ``engine.tiling``, which the kernels do not
    import: changing the policy must not recompile them."""
    from lstm_numba.engine import tiling

    before = codegen._source_hash(generated, PLUGINS)
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: real(obj) + ("# edited\n" if obj is tiling else ""))
    assert codegen._source_hash(generated, PLUGINS) == before
