"""Bad input to the Python API: every refusal is a ValueError or TypeError (or the project's
own PluginError and TooLargeError) whose one-line message names the argument.

The explicit cases are the ones the issue lists; the property test draws constructor
arguments, shapes, dtypes, values, lengths and states, valid or not, and checks that a
call either succeeds with finite, correctly shaped results or is refused naming one of the
arguments it broke. Every layer built here runs the lstm gate with tanh and sigmoid at
their default parameters, in float32 or float64: two kernel combinations, compiled once.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstm_numba as ln
from lstm_numba.nn import memory
from lstm_numba.nn.heads import Dense, Embedding
from lstm_numba.training import optim

# ----------------------------------------------------------------------------- constructor


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(gate=5), TypeError, r"^gate: expected a plugin name \(a string\), got 5$"),
    (dict(gate=""), ValueError, r"^gate: expected a plugin name, got ''$"),
    (dict(activation=None), TypeError, r"^activation: expected a plugin name \(a string\), got None$"),
    (dict(recurrent_activation=3), TypeError, r"^recurrent_activation: expected a plugin name"),
    (dict(dropout="abc"), TypeError, r"^dropout: expected a probability in \[0, 1\), got 'abc'$"),
    (dict(dropout=None), TypeError, r"^dropout: expected a probability in \[0, 1\), got None$"),
    (dict(dropout=math.nan), ValueError, r"^dropout: expected a probability in \[0, 1\), got nan$"),
    (dict(clip="x"), TypeError, r"^clip: expected a positive threshold or None, got 'x'$"),
    (dict(clip=math.nan), ValueError, r"^clip: expected a positive threshold or None, got nan$"),
    (dict(activation_alpha="x"), TypeError, r"^activation_alpha: expected a finite number or None, got 'x'$"),
    (dict(activation_alpha=math.nan), ValueError, r"^activation_alpha: expected a finite number or None, got nan$"),
    (dict(recurrent_activation_beta=math.inf), ValueError, r"^recurrent_activation_beta: expected a finite number"),
    (dict(seed=-1), ValueError, r"^seed: expected None or an integer >= 0, got -1$"),
    (dict(seed=1.5), TypeError, r"^seed: expected None or an integer >= 0, got 1.5$"),
    (dict(seed="abc"), TypeError, r"^seed: expected None or an integer >= 0, got 'abc'$"),
    (dict(dtype=None), TypeError, r"^dtype: expected one of \('float32', 'float64'\), got None$"),
    (dict(dtype=">f4"), TypeError, r"^dtype: expected one of \('float32', 'float64'\) in the machine's native "
                                   r"byte order, got '>f4'$"),
])
def test_constructor_arguments_are_refused_by_name(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ln.LSTM(3, 4, **kwargs)


def test_gate_none_is_the_default_and_native_dtypes_are_accepted():
    assert ln.LSTM(3, 4, gate=None).gate_name == "lstm" and ln.GRU(3, 4).gate_name == "gru"
    assert ln.LSTM(3, 4, dtype="<f4" if np.little_endian else ">f4").dtype == np.float32
    assert ln.LSTM(3, 4, dtype=np.float64, seed=np.int64(3)).dtype == np.float64


def test_model_arguments_are_checked_too():
    with pytest.raises(TypeError, match=r"^seed: expected None or an integer >= 0, got 1.5$"):
        ln.Forecaster(2, 3, hidden_size=4, seed=1.5)
    with pytest.raises(ValueError, match=r"^gate: expected a plugin name, got ''$"):
        ln.SequenceClassifier(2, 3, hidden_size=4, gate="")
    assert ln.CharLM(5, hidden_size=4, gate=None).rnn.gate_name == "lstm"


def test_plugin_lookups_name_their_argument():
    with pytest.raises(TypeError, match=r"^name: expected a plugin name \(a string\), got None$"):
        ln.check_plugin(None)
    with pytest.raises(ValueError, match=r"^name: expected a plugin name, got ''$"):
        ln.check_plugin("")
    with pytest.raises(ValueError, match=r"^kind: expected one of 'gate', 'activation' or None, got 'weird'$"):
        ln.plugins("weird")


# ----------------------------------------------------------------------------- sizes


def test_sizes_that_cannot_fit_are_refused_at_once_with_the_estimate(monkeypatch):
    with pytest.raises(ln.TooLargeError, match=r"^input_size=3, hidden_size=4611686018427387904, num_layers=1, "
                                               r"float32: the parameters \(.*\) with their initialisation would "
                                               r"need about .* more than this machine's .* of memory$") as info:
        ln.LSTM(3, 2 ** 62)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MemoryError)

    monkeypatch.setattr(memory, "machine_memory", lambda: 16 * 2 ** 30)
    start = time.perf_counter()
    with pytest.raises(ln.TooLargeError, match=r"num_layers=10000000.*would need about \d+\.\d GiB, more than "
                                               r"this machine's 16.0 GiB"):
        ln.LSTM(3, 4, num_layers=10 ** 7)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ln.TooLargeError, match=r"^Dense\(in_features=10000000, out_features=10000000\)"):
        Dense(10 ** 7, 10 ** 7, "float32", np.random.default_rng(0))
    with pytest.raises(ln.TooLargeError, match=r"^Embedding\(num_embeddings=100000000, embedding_dim=1000\)"):
        Embedding(10 ** 8, 1000, "float32", np.random.default_rng(0))
    ln.LSTM(3, 4, num_layers=3)  # what fits is built


def test_a_call_whose_tape_cannot_fit_is_refused_before_allocating(monkeypatch):
    rnn = ln.LSTM(3, 8, num_layers=2, seed=0)
    x = np.zeros((200, 50, 3), np.float32)
    monkeypatch.setattr(memory, "machine_memory", lambda: 2 ** 20)
    with pytest.raises(ln.TooLargeError, match=r"^x of shape \(200, 50, 3\) \(T=200, B=50\) through input_size=3, "
                                               r"hidden_size=8, num_layers=2, float32: the tape and workspace of "
                                               r"forward and backward would need about \d+\.\d MiB"):
        rnn(x)
    with pytest.raises(ln.TooLargeError, match=r"the tape and workspace of forward would need"):
        rnn(x, need_grad=False)
    monkeypatch.undo()
    y, _ = rnn(x)
    assert y.shape == (200, 50, 8)


# ----------------------------------------------------------------------------- calls


def test_state_state_dict_and_ragged_inputs_are_refused_by_name():
    rnn = ln.LSTM(3, 4, seed=0)
    x = np.zeros((2, 1, 3), np.float32)
    with pytest.raises(TypeError, match=r"^state: expected a tuple of 2 arrays \(h0, c0\) of shape \(1, 1, 4\) "
                                        r"or None, got int$"):
        rnn(x, state=3)
    with pytest.raises(TypeError, match=r"^state \(h0\): expected a floating-point array"):
        ln.GRU(3, 4, seed=0)(x, state=3)
    with pytest.raises(TypeError, match=r"^state_dict: expected a dict of parameter name -> array .* got NoneType$"):
        rnn.load_state_dict(None)
    with pytest.raises(TypeError, match=r"^state_dict: expected a dict .* got list$"):
        rnn.load_state_dict(list(rnn.state_dict().items()))
    with pytest.raises(ValueError, match=r"^x: expected a 3-D floating-point array \(T, B, input_size\), got a list "
                                         r"NumPy cannot convert \(.*inhomogeneous"):
        rnn([[[1.0, 2.0, 3.0]], [[1.0, 2.0]]])
    with pytest.raises(ValueError, match=r"^lengths: expected 1 integers in 1..T=2, got a list NumPy cannot convert"):
        rnn(x, lengths=[[1], [1, 2]])
    y, _ = rnn(x)
    with pytest.raises(TypeError, match=r"^dstate: expected a tuple of 2 arrays"):
        rnn.backward(np.ones_like(y), dstate=3)


def test_gradient_dicts_are_checked_by_name():
    rnn = ln.LSTM(3, 4, seed=0)
    y, _ = rnn(np.zeros((2, 1, 3), np.float32))
    g = rnn.backward(np.ones_like(y))
    opt = optim.Adam(rnn.params, lr=0.1)
    missing = {k: v for k, v in g.params.items() if k != "bias_ih_l0"}
    with pytest.raises(ValueError, match=r"^grads do not match params: missing \['bias_ih_l0'\], unexpected \[\]$"):
        opt.step(missing)
    with pytest.raises(TypeError, match=r"^grads: expected a dict .* got Gradients \(a layer's backward\(\) returns "
                                        r"Gradients: pass its .params\)$"):
        opt.step(g)
    with pytest.raises(TypeError, match=r"^grads: expected a dict"):
        optim.clip_grad_norm([1.0], 1.0)
    with pytest.raises(ValueError, match=r"^max_norm: expected a positive number, got 'x'$"):
        optim.clip_grad_norm(g.params, "x")
    opt.step(g.params)


# ----------------------------------------------------------------------------- the property

_NAN = float("nan")
_CONSTRUCTOR = {  # name: (valid values, invalid values)
    "input_size": (st.integers(1, 3), st.sampled_from([0, -2, 2.5, "3", None, True])),
    "hidden_size": (st.integers(1, 3), st.sampled_from([0, 1.0, "2", None, False])),
    "num_layers": (st.integers(1, 2), st.sampled_from([0, -1, 1.5, "1"])),
    "dropout": (st.sampled_from([0.0, 0.25]), st.sampled_from([-0.1, 1.0, _NAN, math.inf, "abc", None])),
    "clip": (st.sampled_from([None, 0.5, 3.0]), st.sampled_from([0, -1.0, _NAN, "x"])),
    "dtype": (st.sampled_from(["float32", "float64", np.float32]),
              st.sampled_from([None, "float16", ">f4" if np.little_endian else "<f4", "int32", 5])),
    "seed": (st.sampled_from([None, 0, 7]), st.sampled_from([-1, 1.5, "abc"])),
    "gate": (st.sampled_from([None, "lstm"]), st.sampled_from([5, "", "nope"])),
    "activation": (st.just("tanh"), st.sampled_from([None, 3, "nope"])),
    "activation_alpha": (st.just(None), st.sampled_from([_NAN, math.inf, "x"])),
}
_ERRORS = (ValueError, TypeError, ln.PluginError, ln.TooLargeError)


@st.composite
def layer_calls(draw, mode):
    """(constructor kwargs, the constructor arguments broken, x, lengths, state kind, the
    call arguments broken): all valid, or one or two bad constructor arguments, or one or
    two bad call arguments (``mode``)."""
    broken = (draw(st.sets(st.sampled_from(sorted(_CONSTRUCTOR)), min_size=1, max_size=2))
              if mode == "constructor" else set())
    call_broken = (draw(st.sets(st.sampled_from(["features", "int", "nan", "lengths", "state"]), min_size=1,
                                max_size=2)) if mode == "call" else set())
    kwargs = {name: draw(invalid if name in broken else valid) for name, (valid, invalid) in _CONSTRUCTOR.items()}
    kwargs["bidirectional"] = draw(st.booleans())
    kwargs["batch_first"] = draw(st.booleans())
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    features = kwargs["input_size"] if isinstance(kwargs["input_size"], int) and kwargs["input_size"] > 0 else 2
    features += "features" in call_broken
    x_dtype = "int64" if "int" in call_broken else draw(st.sampled_from(["float32", "float64", "float16"]))
    shape = (batch, steps, features) if kwargs["batch_first"] else (steps, batch, features)
    values = draw(st.lists(st.floats(-10, 10, width=16), min_size=math.prod(shape), max_size=math.prod(shape)))
    x = np.array(values, dtype=np.float64).reshape(shape).astype(x_dtype)
    if "nan" in call_broken and x_dtype != "int64":
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([_NAN, math.inf, -math.inf]))
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, steps), min_size=batch, max_size=batch)))
    if "lengths" in call_broken:
        lengths = draw(st.sampled_from([[0] * batch, [steps + 1] * batch, [1.5] * batch, [1] * (batch + 1)]))
    state = draw(st.sampled_from(["shape", "int", "nan"])) if "state" in call_broken else None
    names = {"features": "x", "int": "x", "nan": "x", "lengths": "lengths", "state": "state"}
    return kwargs, broken, x, lengths, state, {names[b] for b in call_broken}


def _names_one_of(message: str, names) -> bool:
    return any(message.startswith(name) or f"{name}" in message.split(":")[0] for name in names) or any(
        f"unknown {name}" in message or f"{name} plugin" in message for name in names)


@pytest.mark.parametrize("mode", ["valid", "constructor", "call"])
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_call_succeeds_finitely_or_is_refused_naming_the_argument(mode, data):
    kwargs, broken, x, lengths, state_kind, call_broken = data.draw(layer_calls(mode))
    try:
        rnn = ln.LSTM(**kwargs)
    except _ERRORS as exc:
        assert broken, f"valid arguments refused: {exc}"
        assert "\n" not in str(exc) and _names_one_of(str(exc), broken), (broken, str(exc))
        return
    assert not broken, f"accepted {sorted(broken)}: {kwargs}"
    directions = 2 if rnn.bidirectional else 1
    batch = x.shape[0] if rnn.batch_first else x.shape[1]
    state_shape = (rnn.num_layers * directions, batch, rnn.hidden_size)
    state = None
    if state_kind == "shape":
        state = (np.zeros((state_shape[0] + 1,) + state_shape[1:]),) * 2
    elif state_kind == "int":
        state = 3
    elif state_kind == "nan":
        state = (np.full(state_shape, np.nan), np.zeros(state_shape))
    try:
        y, (h, c) = rnn(x, state, lengths)
    except _ERRORS as exc:
        assert call_broken, f"a valid call refused: {exc}"
        assert "\n" not in str(exc) and _names_one_of(str(exc), call_broken), (call_broken, str(exc))
        return
    assert not call_broken, f"accepted a call with bad {sorted(call_broken)}"
    steps = x.shape[1] if rnn.batch_first else x.shape[0]
    width = directions * rnn.hidden_size
    expected = (batch, steps, width) if rnn.batch_first else (steps, batch, width)
    assert y.shape == expected and y.dtype == rnn.dtype and np.isfinite(y).all()
    assert h.shape == c.shape == state_shape and np.isfinite(h).all() and np.isfinite(c).all()
    g = rnn.backward(np.ones_like(y))
    assert g.x.shape == x.shape and np.isfinite(g.x).all()
    for key, value in rnn.params.items():
        assert g.params[key].shape == value.shape and np.isfinite(g.params[key]).all(), key
