"""Bad input gets a ValueError or TypeError that names the argument, the expectation and
what was given; never a Numba typing error or a crash."""

import numpy as np
import pytest

import lstm_numba as ln


@pytest.fixture(scope="module")
def rnn():
    return ln.LSTM(3, 4, num_layers=2, dtype="float32", seed=0)


def x_ok(steps=5, batch=2, features=3):
    return np.zeros((steps, batch, features), np.float32)


@pytest.mark.parametrize("x,error,pattern", [
    (np.zeros((5, 3), np.float32), ValueError, r"x: expected a 3-D array \(T, B, input_size\), got shape \(5, 3\)"),
    (np.zeros((5, 2, 7), np.float32), ValueError, r"x: expected last dimension input_size=3, got 7"),
    (np.zeros((5, 2, 3), np.int64), TypeError, r"x: expected a floating-point array .* got dtype int64"),
    (np.zeros((5, 2, 3), np.complex64), TypeError, r"x: expected a floating-point .* complex64"),
    (np.zeros((0, 2, 3), np.float32), ValueError, r"x: expected at least one time step .* got shape \(0, 2, 3\)"),
    (np.zeros((5, 0, 3), np.float32), ValueError, r"x: expected at least one time step and one batch row"),
    ("not an array", TypeError, r"x: expected a floating-point array"),
])
def test_bad_x(rnn, x, error, pattern):
    with pytest.raises(error, match=pattern):
        rnn.forward(x)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_x(rnn, value):
    x = x_ok()
    x[3, 1, 2] = value
    with pytest.raises(ValueError, match=r"x: contains NaN or Inf \(first at index \(3, 1, 2\)\)"):
        rnn.forward(x)


def test_huge_finite_x_is_accepted(rnn):
    """The finiteness check refuses NaN and Inf only, not the largest finite values."""
    x = x_ok()
    x[0, 0, 0] = 3e38
    y, _ = rnn.forward(x)
    assert np.isfinite(y).all()


def test_bad_states(rnn):
    h = np.zeros((2, 2, 4), np.float32)
    with pytest.raises(ValueError, match=r"state \(h0\): expected shape \(2, 2, 4\) .* got \(1, 2, 4\)"):
        rnn.forward(x_ok(), (np.zeros((1, 2, 4), np.float32), h))
    with pytest.raises(ValueError, match=r"state: expected 2 arrays \(h, c\), got 1"):
        rnn.forward(x_ok(), (h,))
    with pytest.raises(ValueError, match=r"state \(c0\): contains NaN"):
        rnn.forward(x_ok(), (h, np.full((2, 2, 4), np.nan, np.float32)))


@pytest.mark.parametrize("lengths,error,pattern", [
    ([5, 0], ValueError, r"lengths: values must be in 1..T=5, got 0 at index 1"),
    ([6, 2], ValueError, r"lengths: values must be in 1..T=5, got 6 at index 0"),
    ([5], ValueError, r"lengths: expected shape \(2,\) .* got \(1,\)"),
    ([2.5, 3.0], TypeError, r"lengths: expected integers, got dtype float64"),
])
def test_bad_lengths(rnn, lengths, error, pattern):
    with pytest.raises(error, match=pattern):
        rnn.forward(x_ok(), lengths=lengths)


def test_backward_before_forward_and_bad_dy():
    rnn = ln.LSTM(3, 4, seed=0)
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(\) first"):
        rnn.backward(np.zeros((5, 2, 4), np.float32))
    rnn.forward(x_ok())
    with pytest.raises(ValueError, match=r"dy: expected shape \(5, 2, 4\) \(the shape of y\), got \(5, 2, 3\)"):
        rnn.backward(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"dy: contains NaN"):
        rnn.backward(np.full((5, 2, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"state \(h0\): expected shape \(1, 2, 4\)"):
        rnn.backward(np.zeros((5, 2, 4), np.float32), (np.zeros((2, 2, 4), np.float32),) * 2)


@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(input_size=0, hidden_size=4), ValueError, r"input_size: expected a positive integer, got 0"),
    (dict(input_size=3, hidden_size=2.5), ValueError, r"hidden_size: expected a positive integer, got 2.5"),
    (dict(input_size=3, hidden_size=4, num_layers=0), ValueError, r"num_layers: expected a positive integer"),
    (dict(input_size=3, hidden_size=4, dtype="float16"), TypeError,
     r"dtype: expected one of \('float32', 'float64'\), got 'float16'"),
    (dict(input_size=3, hidden_size=4, dropout=1.0), ValueError,
     r"dropout: expected a probability in \[0, 1\), got 1.0"),
    (dict(input_size=3, hidden_size=4, clip=-1), ValueError, r"clip: expected a positive threshold or None, got -1"),
    (dict(input_size=3, hidden_size=4, gate="nope"), ln.PluginError, r"unknown gate 'nope'; installed: .*lstm"),
    (dict(input_size=3, hidden_size=4, activation="nope"), ln.PluginError, r"unknown activation 'nope'"),
])
def test_bad_constructor_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ln.LSTM(**kwargs)


def test_load_state_dict_errors():
    rnn = ln.LSTM(3, 4, seed=0)
    good = rnn.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh_l0'\], unexpected keys \['extra'\]"):
        rnn.load_state_dict({**{k: v for k, v in good.items() if k != "bias_hh_l0"}, "extra": good["bias_ih_l0"]})
    with pytest.raises(ValueError, match=r"weight_ih_l0: expected shape \(16, 3\)"):
        rnn.load_state_dict({**good, "weight_ih_l0": np.zeros((16, 2))})
    with pytest.raises(ValueError, match=r"weight_hh_l0: contains NaN"):
        rnn.load_state_dict({**good, "weight_hh_l0": np.full((16, 4), np.nan)})
    # a failed load leaves the parameters untouched
    np.testing.assert_array_equal(rnn.params["weight_ih_l0"], good["weight_ih_l0"])


@pytest.mark.parametrize("replacement, got", [
    (np.zeros((16, 4)), r"got float64 \(16, 4\)"),                 # a float32 layer
    (np.zeros((16, 3), np.float32), r"got float32 \(16, 3\)"),     # the wrong shape
    ([[0.0] * 4] * 16, r"got list"),
])
def test_a_replaced_parameter_array_is_checked_before_the_kernels_read_it(replacement, got):
    """``params`` holds the live arrays the kernels read as they are: one swapped in with
    another dtype or shape would be read as garbage or out of bounds."""
    rnn = ln.LSTM(3, 4, seed=0)
    x = np.ones((2, 1, 3), np.float32)
    rnn.params["weight_hh_l0"] = replacement
    with pytest.raises(ValueError, match=r"params\['weight_hh_l0'\]: expected a float32 array of shape \(16, 4\), "
                       + got):
        rnn(x)
    rnn.params["weight_hh_l0"] = np.zeros((16, 4), np.float32)
    rnn(x)
