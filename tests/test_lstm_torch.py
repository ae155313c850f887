"""Parity of ln.LSTM with torch.nn.LSTM: outputs, final states and every gradient."""

import numpy as np
import pytest
from conftest import max_rel_err

import lstm_numba as ln
from lstm_numba.engine import blas_control
from lstm_numba.engine import tiling as engine_tiling

torch = pytest.importorskip("torch")

TOLERANCE = {"float64": 1e-9, "float32": 1e-4}


def run_torch(module, x, h0, c0, lengths, batch_first, dy, dh, dc):
    xt = torch.from_numpy(x).requires_grad_()
    h0t = torch.from_numpy(h0).requires_grad_()
    c0t = torch.from_numpy(c0).requires_grad_()
    if lengths is None:
        yt, (ht, ct) = module(xt, (h0t, c0t))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        yp, (ht, ct) = module(packed, (h0t, c0t))
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, batch_first=batch_first,
                                                       total_length=x.shape[1 if batch_first else 0])
    loss = (yt * torch.from_numpy(dy)).sum() + (ht * torch.from_numpy(dh)).sum() + (ct * torch.from_numpy(dc)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return (yt.detach().numpy(), ht.detach().numpy(), ct.detach().numpy(), xt.grad.numpy(), h0t.grad.numpy(),
            c0t.grad.numpy(), grads)


CASES = [
    # layers, bidirectional, batch_first, lengths, initial state
    (1, False, False, None, False),
    (1, False, False, None, True),
    (2, False, True, None, True),
    (1, True, False, [6, 2, 5, 1], True),
    (2, True, True, [3, 6, 6, 4], False),
    (3, True, False, [1, 6, 2, 5], True),
    (3, False, False, [6, 5, 4, 3], True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layers,bidirectional,batch_first,lengths,with_state", CASES)
def test_matches_torch(dtype, layers, bidirectional, batch_first, lengths, with_state, tiling):
    steps, batch, inputs, hidden = 6, 4, 3, 6
    rng = np.random.default_rng(layers * 10 + bidirectional)
    rnn = ln.LSTM(inputs, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first,
                  dtype=dtype, seed=7)
    reference = torch.nn.LSTM(inputs, hidden, num_layers=layers, bidirectional=bidirectional,
                              batch_first=batch_first, dtype=getattr(torch, dtype))
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.state_dict().items()})

    x_shape = (batch, steps, inputs) if batch_first else (steps, batch, inputs)
    x = rng.standard_normal(x_shape).astype(dtype)
    state_shape = (layers * (2 if bidirectional else 1), batch, hidden)
    h0 = rng.standard_normal(state_shape).astype(dtype) if with_state else np.zeros(state_shape, dtype)
    c0 = rng.standard_normal(state_shape).astype(dtype) if with_state else np.zeros(state_shape, dtype)

    y, (h_n, c_n) = rnn.forward(x, (h0, c0) if with_state else None, lengths=lengths)
    tile = engine_tiling.choose_tiling(True, True, batch, inputs, hidden, 4 * hidden, 8)
    # hidden-split fuses the input projection into the step; rows does where the BLAS has
    # the small-matrix kernel (not on CI's Haswell kernels), so CI runs both paths
    expected = (2, True) if tiling == "hidden-split" else (1, blas_control.small_kernel_available())
    assert (tile.parts, tile.fused_input) == expected
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh = rng.standard_normal(h_n.shape).astype(dtype)
    dc = rng.standard_normal(c_n.shape).astype(dtype)
    g = rnn.backward(dy, (dh, dc))

    yt, ht, ct, dxt, dh0t, dc0t, grads_t = run_torch(reference, x, h0, c0, lengths, batch_first, dy, dh, dc)
    tol = TOLERANCE[dtype]
    for name, ours, theirs in [("y", y, yt), ("h_n", h_n, ht), ("c_n", c_n, ct), ("dx", g.x, dxt),
                               ("dh0", g.state[0], dh0t), ("dc0", g.state[1], dc0t)]:
        assert ours.dtype == np.dtype(dtype), name
        assert ours.shape == theirs.shape, name
        assert max_rel_err(ours, theirs) <= tol, (name, max_rel_err(ours, theirs))
    assert set(g.params) == set(grads_t)
    for name, theirs in grads_t.items():
        assert max_rel_err(g.params[name], theirs) <= tol, (name, max_rel_err(g.params[name], theirs))


def test_padded_outputs_are_zero_and_states_stop_at_length():
    rnn = ln.LSTM(2, 3, bidirectional=True, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 3, 2))
    lengths = [5, 2, 3]
    y, (h_n, c_n) = rnn(x, lengths=lengths)
    assert np.all(y[2:, 1] == 0) and np.all(y[3:, 2] == 0)
    # the row of length 2 ends where a 2-step sequence of its own ends
    y2, (h2, c2) = rnn(x[:2, 1:2])
    np.testing.assert_allclose(h_n[:, 1], h2[:, 0], rtol=1e-12)
    np.testing.assert_allclose(y[:2, 1], y2[:, 0], rtol=1e-12)


def test_bias_false_has_no_bias_parameters():
    rnn = ln.LSTM(3, 4, bias=False, dtype="float64", seed=0)
    assert sorted(rnn.state_dict()) == ["weight_hh_l0", "weight_ih_l0"]
    reference = torch.nn.LSTM(3, 4, bias=False, dtype=torch.float64)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in rnn.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    y, _ = rnn(x)
    np.testing.assert_allclose(y, reference(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-10, atol=1e-13)
