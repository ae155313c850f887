"""The generated kernels' file name (``lstm_numba.engine.codegen``): Numba's disk cache is
keyed on that file, so its hash must change with any source the kernels compile in."""

import inspect
import logging
import os

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


def test_engine_kernels_keep_their_numba_cache_out_of_the_package():
    """The disk-cached kernels of ``engine.kernels`` write their index and data files under
    the kernel cache directory, never beside their source (site-packages)."""
    from lstm_numba.engine.kernels import arrays

    for kernel in (gemm.row_block_gemm, gemm.weight_gradients, arrays.fill_inputs):
        cache_path = kernel._cache._cache_path
        assert cache_path.startswith(str(config.kernel_cache_dir())), cache_path
        assert not cache_path.startswith(os.path.dirname(gemm.__file__))


def test_first_load_of_a_combination_announces_its_compile(tmp_path, monkeypatch, caplog):
    from lstm_numba import registry

    monkeypatch.setenv(config.CACHE_DIR_ENV, str(tmp_path))
    entries = (registry.get_gate("lstm"), registry.get_activation("tanh"), (0.0, 0.0),
               registry.get_activation("sigmoid"), (0.0, 0.0), "float64")
    with caplog.at_level(logging.INFO, logger="lstm_numba"):
        kernels = codegen.load_kernels.__wrapped__(*entries)
    assert kernels.gate is entries[0].obj
    assert [r.getMessage() for r in caplog.records] == [
        "compiling kernels for lstm/float64 with tanh and sigmoid (once per machine, about 10-30 s)"]
    # once Numba has cached them (an index file beside the module), loading is silent
    stem = next(tmp_path.glob("k_lstm_*.py")).stem
    (tmp_path / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "__pycache__" / f"{stem}.forward_rows-1.py311.nbi").write_bytes(b"")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lstm_numba"):
        codegen.load_kernels.__wrapped__(*entries)
    assert caplog.records == []
