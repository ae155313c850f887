"""Float64 central finite differences of a random projection of (y, h_n, c_n), for every
parameter, the input and the initial state, through the whole multi-layer layer."""

import numpy as np
import pytest
from conftest import central_difference

import lstm_numba as ln

EPS = 1e-6


def projected_loss(rnn, x, state, lengths, weights):
    y, (h, c) = rnn.forward(x, state, lengths=lengths, need_grad=False)
    wy, wh, wc = weights
    return float((y * wy).sum() + (h * wh).sum() + (c * wc).sum())


def numeric_grad(fn, array, rng, n_probe=12):
    """Central differences at ``n_probe`` random entries of ``array`` (perturbed in place)."""
    flat = array.reshape(-1)
    idx = rng.choice(flat.size, size=min(n_probe, flat.size), replace=False)
    return idx, np.array([central_difference(fn, flat, i, EPS) for i in idx])


@pytest.mark.parametrize("bidirectional,lengths,batch_first", [(False, None, False), (True, [4, 1, 3], True)])
def test_finite_differences(bidirectional, lengths, batch_first, tiling):
    rng = np.random.default_rng(3)
    steps, batch, inputs, hidden, layers = 4, 3, 2, 4, 2
    rnn = ln.LSTM(inputs, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                  dtype="float64", seed=1)
    x = rng.standard_normal((batch, steps, inputs) if batch_first else (steps, batch, inputs))
    d = 2 if bidirectional else 1
    h0 = rng.standard_normal((layers * d, batch, hidden))
    c0 = rng.standard_normal((layers * d, batch, hidden))
    y, (h, c) = rnn.forward(x, (h0, c0), lengths=lengths)
    weights = (rng.standard_normal(y.shape), rng.standard_normal(h.shape), rng.standard_normal(c.shape))
    g = rnn.backward(weights[0], weights[1:])

    def loss():
        return projected_loss(rnn, x, (h0, c0), lengths, weights)

    targets = [(name, rnn.params[name], g.params[name]) for name in rnn.params]
    targets += [("x", x, g.x), ("h0", h0, g.state[0]), ("c0", c0, g.state[1])]
    for name, array, analytic in targets:
        idx, numeric = numeric_grad(loss, array, rng)
        np.testing.assert_allclose(analytic.reshape(-1)[idx], numeric, rtol=1e-6, atol=1e-8, err_msg=name)
