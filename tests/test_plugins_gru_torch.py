"""``ln.GRU`` (the ``gru`` gate plugin) against ``torch.nn.GRU``: ln's state_dict loads into
torch unchanged, and outputs, final state and every gradient (parameters, x, h0) match,
including multi-layer bidirectional runs with lengths (torch packed sequences)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import max_rel_err

import lstm_numba as ln

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

TOL = {"float64": 1e-9, "float32": 1e-4}
T, B, I, H = 6, 4, 3, 6


def _run_both(dtype, num_layers, bidirectional, lengths, seed=0):
    dirs = 2 if bidirectional else 1
    gru = ln.GRU(I, H, num_layers=num_layers, bidirectional=bidirectional, dtype=dtype, seed=seed)
    ref = torch.nn.GRU(I, H, num_layers=num_layers, bidirectional=bidirectional, dtype=getattr(torch, dtype))
    ref.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in gru.state_dict().items()}, strict=True)

    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(T, B, I)).astype(dtype)
    h0 = (0.5 * rng.normal(size=(num_layers * dirs, B, H))).astype(dtype)
    wy = rng.normal(size=(T, B, dirs * H)).astype(dtype)
    wh = rng.normal(size=h0.shape).astype(dtype)
    if lengths is not None:  # the loss must not see padded outputs; both give zeros there
        for b, length in enumerate(lengths):
            wy[length:, b] = 0.0

    y, h_n = gru(x, h0, lengths=lengths)
    grads = gru.backward(wy, wh)

    xt = torch.from_numpy(x.copy()).requires_grad_()
    h0t = torch.from_numpy(h0.copy()).requires_grad_()
    if lengths is None:
        yt, hnt = ref(xt, h0t)
    else:
        packed = pack_padded_sequence(xt, torch.as_tensor(lengths), enforce_sorted=False)
        out, hnt = ref(packed, h0t)
        yt, _ = pad_packed_sequence(out, total_length=T)
    loss = (yt * torch.from_numpy(wy)).sum() + (hnt * torch.from_numpy(wh)).sum()
    loss.backward()

    errors = {"y": max_rel_err(y, yt.detach().numpy()), "h_n": max_rel_err(h_n, hnt.detach().numpy()),
              "dx": max_rel_err(grads.x, xt.grad.numpy()), "dh0": max_rel_err(grads.state, h0t.grad.numpy())}
    for name, param in ref.named_parameters():
        errors[f"d{name}"] = max_rel_err(grads.params[name], param.grad.numpy())
    assert set(grads.params) == {name for name, _ in ref.named_parameters()}
    return errors


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("num_layers,bidirectional,lengths", [
    (1, False, None),
    (2, True, None),
    (2, True, [6, 3, 1, 5]),
    (3, False, [2, 6, 4, 6]),
], ids=["1layer", "2layer-bi", "2layer-bi-lengths", "3layer-lengths"])
def test_gru_matches_torch(dtype, num_layers, bidirectional, lengths, tiling):
    errors = _run_both(dtype, num_layers, bidirectional, None if lengths is None else np.array(lengths))
    bad = {k: f"{v:.2e}" for k, v in errors.items() if not v <= TOL[dtype]}
    assert not bad, f"errors above {TOL[dtype]:g} ({dtype}): {bad}"


def test_torch_state_dict_loads_into_ln_gru():
    ref = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    gru = ln.GRU(I, H, num_layers=2, bidirectional=True, dtype="float64")
    gru.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(3).normal(size=(T, B, I))
    y, h_n = gru(x)
    yt, hnt = ref(torch.from_numpy(x))
    assert max_rel_err(y, yt.detach().numpy()) < 1e-12
    assert max_rel_err(h_n, hnt.detach().numpy()) < 1e-12
