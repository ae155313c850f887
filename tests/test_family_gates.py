"""The gates added with "More of the LSTM family" (``indrnn``, ...), checked as the original
built-ins are in ``test_plugins_gates.py``: against the plain-NumPy references of
``naive_gates`` through a 2-layer bidirectional layer with lengths, by float64 finite
differences of every parameter, x and the initial state, by ``check_plugin``, across thread
counts, and through ``step``.

Compile budget: the default run has, per gate, one float32 test (the reference, rows
tiling) and one float64 finite-difference test; everything else (clip, the hidden-split
tiling, other activations, check_plugin, thread counts) is ``slow``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import naive_gates as ng
import numpy as np
import pytest
from conftest import max_rel_err
from test_plugins_gates import _layer_fd, assert_small, compare_with_reference

import lstm_numba as ln

#: minGRU and minLSTM compile the scan kernels besides the step loop: their checks here are slow
#: (the default run checks the gate-independent scan kernels in test_minrnn.py)
NEW_GATES = ["indrnn", pytest.param("mingru", marks=pytest.mark.slow),
             pytest.param("minlstm", marks=pytest.mark.slow)]
#: A non-default activation pair per gate (float64, slow); the minimal RNNs use none.
NONDEFAULT = {"indrnn": dict(activation="relu"), "mingru": dict(activation="relu"),
              "minlstm": dict(activation="relu")}


@pytest.mark.parametrize("gate", NEW_GATES)
def test_matches_reference_float32(gate):
    assert_small(compare_with_reference(gate, "float32", clip=0.8), 1e-5)


@pytest.mark.parametrize("gate", NEW_GATES)
def test_layer_gradients_match_finite_differences_float64(gate):
    assert_small(_layer_fd(gate, None), 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("gate", NEW_GATES)
def test_layer_gradients_with_clip(gate):
    assert_small(_layer_fd(gate, 0.5), 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("clip", [None, 0.5], ids=["noclip", "clip"])
@pytest.mark.parametrize("gate", NEW_GATES)
def test_matches_reference_both_tilings(gate, clip, dtype, tol, tiling):
    assert_small(compare_with_reference(gate, dtype, clip=clip), tol)


@pytest.mark.slow
@pytest.mark.parametrize("gate", NEW_GATES)
def test_matches_reference_unidirectional_batch_first_nondefault_activations(gate):
    errors = compare_with_reference(gate, "float64", bidirectional=False, lengths=None, batch_first=True, seed=3,
                                    **NONDEFAULT[gate])
    assert_small(errors, 1e-12)


DETERMINISM_SCRIPT = textwrap.dedent("""
    import json, sys, numpy as np, lstm_numba as ln, numba
    from lstm_numba.engine import tiling
    if sys.argv[3] == "hidden-split":
        sys.path.insert(0, sys.argv[4])
        from tilings import hidden_split_settings
        for target, name, value in hidden_split_settings():
            setattr(target, name, value)
    rng = np.random.default_rng(0)
    rnn = ln.LSTM(16, 32, num_layers=2, bidirectional=True, dtype="float32", seed=0, gate=sys.argv[2],
                  **json.loads(sys.argv[5]))
    x = rng.standard_normal((12, 9, 16)).astype(np.float32)
    y, final = rnn(x, lengths=[12, 3, 7, 12, 1, 9, 12, 5, 2])
    g = rnn.backward(rng.standard_normal(y.shape).astype(np.float32))
    finals = final if isinstance(final, tuple) else (final,)
    np.savez(sys.argv[1], y=y, dx=g.x, **{f"final{k}": v for k, v in enumerate(finals)}, **g.params)
    gate = rnn.gate
    tile = tiling.choose_tiling(gate.elementwise, gate.additive, 9, 16, 32, gate.n_blocks * 32, 4, gate.recurrent)
    print(numba.get_num_threads(), tile.parts)
""")


@pytest.mark.slow
@pytest.mark.parametrize("gate", NEW_GATES)
def test_bitwise_identical_across_thread_counts(tmp_path, gate, tiling):
    assert_bitwise_across_thread_counts(tmp_path, gate, tiling)


def assert_bitwise_across_thread_counts(tmp_path, gate, tiling, **layer_kwargs):
    """Outputs, final states and gradients of a 2-layer bidirectional float32 layer with
    lengths (and ``layer_kwargs``), in processes with 1, 2 and 3 Numba threads, are bitwise equal."""
    results = {}
    for threads in ("1", "2", "3"):
        out = tmp_path / f"run{threads}.npz"
        env = dict(os.environ, NUMBA_NUM_THREADS=threads, LSTM_NUMBA_ADAPTIVE_THREADS="0")
        proc = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT, str(out), gate, tiling,
                               str(Path(__file__).parent), json.dumps(layer_kwargs)], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        threads_seen, parts = proc.stdout.split()
        assert threads_seen == threads and (int(parts) > 1) == (tiling == "hidden-split"), proc.stdout
        results[threads] = dict(np.load(out))
    for threads in ("2", "3"):
        for key, value in results["1"].items():
            assert np.array_equal(value, results[threads][key]), (threads, key)


# --------------------------------------------------------------------------- IndRNN


def test_indrnn_has_no_recurrent_matrix_and_loads_hastes_layout():
    """No weight_hh/bias_hh; haste's (kernel, recurrent_scale, bias) load as (weight_ih^T,
    recurrent_scale, bias_ih) and give haste's IndRNNScript: h_t = tanh(x_t @ kernel + bias
    + h_{t-1} * recurrent_scale). Float32, the kernels the reference test compiles."""
    rnn = ln.LSTM(3, 5, dtype="float32", seed=0, gate="indrnn", clip=0.8)
    assert list(rnn.state_dict()) == ["weight_ih_l0", "bias_ih_l0", "recurrent_scale_l0"]
    rng = np.random.default_rng(1)
    kernel, scale, bias = rng.normal(size=(3, 5)), rng.uniform(-1, 1, 5), rng.normal(size=5)
    rnn.load_state_dict({"weight_ih_l0": kernel.T, "bias_ih_l0": bias, "recurrent_scale_l0": scale})
    x = rng.normal(size=(7, 2, 3))
    y, h_n = rnn(x)
    h, ys = np.zeros((2, 5)), []
    for t in range(7):
        h = np.tanh(np.clip(x[t] @ kernel + bias + h * scale, -0.8, 0.8))
        ys.append(h)
    assert max_rel_err(y, np.stack(ys)) < 1e-5 and max_rel_err(h_n[0], h) < 1e-5
    assert ng.EXTRA_PARAM["indrnn"] == "recurrent_scale"
