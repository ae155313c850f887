"""The layer-normalised built-in gates ``layernorm_gru`` and ``layernorm_lstm`` (haste's
LayerNormGRU and LayerNormLSTM): against plain-NumPy forwards written from haste's
equations (2 layers, bidirectional, lengths), against a torch port of haste's CPU scripts
(``LayerNormGRUScript``, ``LayerNormLSTMScript``: ``F.layer_norm`` and a cell loop, with
autograd's gradients) on haste-layout weights, by float64 finite differences of the whole
layer (every parameter, gamma and beta included, x and the initial state), by
``check_plugin``, across thread counts and through ``step``.

Compile budget: the default run compiles each gate once, float64 with tanh/sigmoid (the
references, the torch ports and the finite differences share it); float32, the
hidden-split tiling, check_plugin, thread counts and streaming are ``slow``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import max_rel_err
from test_plugins_gates import _layer_fd, assert_small

import lstm_numba as ln

#: Each test here compiles kernels no other default test does (about 4 minutes of the
#: default suite on a 2-core machine together): they run in CI's slow pass.
pytestmark = pytest.mark.slow

GATES = ["layernorm_gru", "layernorm_lstm"]
T, B, I, H = 5, 3, 3, 4
LENGTHS = np.array([5, 2, 4])


def _ln(v, eps=1e-5):
    mean = v.mean(axis=-1, keepdims=True)
    return (v - mean) / np.sqrt(v.var(axis=-1, keepdims=True) + eps)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _gru_step(p, x, state, clip):
    """haste's LayerNormGRU step (gates in PyTorch's r, z, n order); biases before the norms."""
    (h,) = state
    a = p["ln_gamma_x"] * _ln(x @ p["weight_ih"].T + p["bias_ih"]) + p["ln_beta_x"]
    b = p["ln_gamma_h"] * _ln(h @ p["weight_hh"].T + p["bias_hh"]) + p["ln_beta_h"]
    (ar, az, an), (br, bz, bn) = np.split(a, 3, axis=1), np.split(b, 3, axis=1)
    r = _sigmoid(np.clip(ar + br, -clip, clip))
    z = _sigmoid(np.clip(az + bz, -clip, clip))
    n = np.tanh(np.clip(an + r * bn, -clip, clip))
    h = (1 - z) * n + z * h
    return h, (h,)


def _lstm_step(p, x, state, clip):
    """haste's LayerNormLSTM step (gates in PyTorch's i, f, g, o order); biases before the norms."""
    h, c = state
    z = (p["ln_gamma_x"] * _ln(x @ p["weight_ih"].T + p["bias_ih"])
         + p["ln_gamma_h"] * _ln(h @ p["weight_hh"].T + p["bias_hh"]) + p["ln_beta"])
    zi, zf, zg, zo = np.split(np.clip(z, -clip, clip), 4, axis=1)
    c = _sigmoid(zf) * c + _sigmoid(zi) * np.tanh(zg)
    h = _sigmoid(zo) * np.tanh(p["ln_gamma_c"] * _ln(c) + p["ln_beta_c"])
    return h, (h, c)


STEPS = {"layernorm_gru": _gru_step, "layernorm_lstm": _lstm_step}


def _reference(gate, params, x, state0, lengths, layers, bidirectional, clip):
    """Stacked layers, one row at a time over its own valid steps (the reverse direction
    over them reversed); returns y (T, B, D*H) and the final states (S, L*D, B, H)."""
    step, dirs = STEPS[gate], 2 if bidirectional else 1
    finals = np.zeros_like(state0)
    for layer in range(layers):
        y = np.zeros((x.shape[0], x.shape[1], dirs * H))
        for d in range(dirs):
            slot = layer * dirs + d
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            p = {k[:-len(suffix)]: v for k, v in params.items() if k.endswith(suffix)}
            p.setdefault("bias_ih", 0.0)
            p.setdefault("bias_hh", 0.0)
            for row, length in enumerate(lengths):
                state = tuple(s[slot, row:row + 1] for s in state0)
                steps = range(length - 1, -1, -1) if d else range(length)
                for t in steps:
                    out, state = step(p, x[t, row:row + 1], state, clip)
                    y[t, row, d * H:(d + 1) * H] = out[0]
                for k, s in enumerate(state):
                    finals[k, slot, row] = s[0]
        x = y
    return x, finals


def _layer(gate, dtype="float64", bias=True, layers=2, bidirectional=True, clip=None, seed=0):
    """A layer with every parameter drawn at random (gains away from 1, shifts away from 0)."""
    rnn = ln.LSTM(I, H, num_layers=layers, bidirectional=bidirectional, dtype=dtype, seed=seed, gate=gate,
                  bias=bias, clip=clip)
    rng = np.random.default_rng(seed + 1)
    rnn.load_state_dict({k: v + 0.3 * rng.normal(size=v.shape) for k, v in rnn.state_dict().items()})
    return rnn


def _forward_errors(gate, dtype, bias=True, clip=None, layers=2, bidirectional=True):
    rnn = _layer(gate, dtype, bias, layers, bidirectional, clip)
    rng = np.random.default_rng(2)
    n_state, dirs = len(rnn.state_names), 2 if bidirectional else 1
    x = rng.normal(size=(T, B, I))
    state0 = 0.5 * rng.normal(size=(n_state, layers * dirs, B, H))
    packed = state0[0] if n_state == 1 else tuple(state0)
    y, final = rnn(x.astype(dtype), tuple(s.astype(dtype) for s in state0) if n_state > 1 else packed.astype(dtype),
                   lengths=LENGTHS)
    y_ref, final_ref = _reference(gate, rnn.state_dict(), x, state0, LENGTHS, layers, bidirectional,
                                  np.inf if clip is None else clip)
    final = np.asarray(final)[None] if n_state == 1 else np.stack(final)
    assert y.dtype == np.dtype(dtype)
    return {"y": max_rel_err(y, y_ref), "final": max_rel_err(final, final_ref)}


@pytest.mark.parametrize("bias, clip", [(True, None), (False, 0.7)], ids=["bias", "nobias-clip"])
@pytest.mark.parametrize("gate", GATES)
def test_matches_hastes_equations_float64(gate, bias, clip):
    assert_small(_forward_errors(gate, "float64", bias=bias, clip=clip), 1e-12)


@pytest.mark.parametrize("gate", GATES)
def test_layer_gradients_match_finite_differences_float64(gate):
    """Every parameter (weights, biases, every gamma and beta), x and the initial state."""
    worst = _layer_fd(gate, None)
    assert {k for k in worst if "ln_gamma" in k or "ln_beta" in k}, worst
    assert_small(worst, 1e-6)


def test_parameters_and_their_initial_values():
    gru = ln.LSTM(I, H, gate="layernorm_gru", dtype="float64")
    params = gru.state_dict()
    assert list(params) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "ln_gamma_x_l0",
                            "ln_gamma_h_l0", "ln_beta_x_l0", "ln_beta_h_l0"]
    assert all(params[f"ln_gamma_{v}_l0"].shape == (3 * H,) and (params[f"ln_gamma_{v}_l0"] == 1).all()
               for v in "xh")
    assert all(params[f"ln_beta_{v}_l0"].shape == (3 * H,) and not params[f"ln_beta_{v}_l0"].any() for v in "xh")
    assert gru.state_names == ("h",)
    lstm = ln.LSTM(I, H, gate="layernorm_lstm", dtype="float64", bias=False)
    assert list(lstm.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "ln_gamma_x_l0", "ln_gamma_h_l0",
                                       "ln_beta_l0", "ln_gamma_c_l0", "ln_beta_c_l0"]
    for name in GATES:
        (entry,) = [e for e in ln.plugins("gate") if e.name == name]
        assert (entry.distribution, entry.status, entry.target) == \
            ("lstm-numba", "ok", f"lstm_numba_plugins.gates.{name}:gate")
        assert "haste" in entry.obj.doc


# --------------------------------------------------------------------------- torch ports of haste


def _haste_to_ours(array, order, axis=0):
    """haste's gate blocks (GRU z, r, h; LSTM i, g, f, o) in PyTorch's order along ``axis``."""
    parts = np.split(np.asarray(array), len(order), axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


HASTE = {  # gate -> (blocks, our block k is haste's block order[k], haste's extra parameters)
    "layernorm_gru": (3, (1, 0, 2)),
    "layernorm_lstm": (4, (0, 2, 1, 3)),
}


def _haste_script(gate, torch, x, h0, c0, w):
    """haste's LayerNormGRUScript / LayerNormLSTMScript (eval, no zoneout), as published."""
    F = torch.nn.functional
    size = w["kernel"].shape[1]
    hidden = w["recurrent_kernel"].shape[0]
    if gate == "layernorm_gru":
        h, ys = h0, []
        wx = F.layer_norm(x @ w["kernel"], (size,), weight=w["gamma"][0]) + w["bias"]
        for t in range(x.shape[0]):
            rh = F.layer_norm(h @ w["recurrent_kernel"], (size,), weight=w["gamma"][1]) + w["recurrent_bias"]
            vx, vh = torch.chunk(wx[t], 3, 1), torch.chunk(rh, 3, 1)
            z = torch.sigmoid(vx[0] + vh[0])
            r = torch.sigmoid(vx[1] + vh[1])
            g = torch.tanh(vx[2] + r * vh[2])
            h = z * h + (1 - z) * g
            ys.append(h)
        return torch.stack(ys), (h,)
    h, c, ys = h0, c0, []
    wx = F.layer_norm(x @ w["kernel"], (size,), weight=w["gamma"][0])
    for t in range(x.shape[0]):
        v = F.layer_norm(h @ w["recurrent_kernel"], (size,), weight=w["gamma"][1]) + wx[t] + w["bias"]
        i, g, f, o = torch.chunk(v, 4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (hidden,), weight=w["gamma_h"], bias=w["beta_h"]))
        ys.append(h)
    return torch.stack(ys), (h, c)


def _ours_from_haste(gate, w):
    n_blocks, order = HASTE[gate]
    k = lambda a, axis=0: _haste_to_ours(a.detach().numpy(), order, axis)  # noqa: E731
    params = {"weight_ih_l0": k(w["kernel"], 1).T, "weight_hh_l0": k(w["recurrent_kernel"], 1).T,
              "ln_gamma_x_l0": k(w["gamma"][0]), "ln_gamma_h_l0": k(w["gamma"][1])}
    if gate == "layernorm_gru":
        params.update(ln_beta_x_l0=k(w["bias"]), ln_beta_h_l0=k(w["recurrent_bias"]))
    else:
        params.update(ln_beta_l0=k(w["bias"]), ln_gamma_c_l0=w["gamma_h"].detach().numpy(),
                      ln_beta_c_l0=w["beta_h"].detach().numpy())
    return params


@pytest.mark.parametrize("gate", GATES)
def test_matches_hastes_torch_script_with_gradients(gate):
    """bias=False: haste's cell exactly. Outputs, final states and every gradient (autograd's)."""
    torch = pytest.importorskip("torch")
    n_blocks, _ = HASTE[gate]
    gen = torch.Generator().manual_seed(0)
    rand = lambda *shape, scale=0.5: (scale * torch.randn(*shape, generator=gen, dtype=torch.float64))  # noqa: E731
    w = {"kernel": rand(I, n_blocks * H), "recurrent_kernel": rand(H, n_blocks * H),
         "bias": rand(n_blocks * H), "gamma": 1 + rand(2, n_blocks * H, scale=0.3)}
    if gate == "layernorm_gru":
        w["recurrent_bias"] = rand(n_blocks * H)
    else:
        w.update(gamma_h=1 + rand(H, scale=0.3), beta_h=rand(H))
    x, h0, c0 = rand(T, B, I, scale=1.0), rand(B, H), rand(B, H)
    for tensor in (*w.values(), x, h0, c0):
        tensor.requires_grad_(True)
    y_t, final_t = _haste_script(gate, torch, x, h0, c0, w)
    wy = rand(*y_t.shape, scale=1.0)
    wf = [rand(B, H, scale=1.0) for _ in final_t]
    (torch.sum(wy * y_t) + sum(torch.sum(a * b) for a, b in zip(wf, final_t))).backward()

    rnn = ln.LSTM(I, H, gate=gate, bias=False, dtype="float64")
    rnn.load_state_dict(_ours_from_haste(gate, w))
    state0 = h0.detach().numpy()[None] if gate == "layernorm_gru" else (h0.detach().numpy()[None],
                                                                         c0.detach().numpy()[None])
    y, final = rnn(x.detach().numpy(), state0)
    finals = (final,) if gate == "layernorm_gru" else final
    dfinal = wf[0].numpy()[None] if gate == "layernorm_gru" else tuple(a.numpy()[None] for a in wf)
    g = rnn.backward(wy.numpy(), dfinal)
    errors = {"y": max_rel_err(y, y_t.detach().numpy()), "dx": max_rel_err(g.x, x.grad.numpy())}
    errors.update({f"final{k}": max_rel_err(a[0], b.detach().numpy()) for k, (a, b) in enumerate(zip(finals, final_t))})
    dstate = (g.state,) if gate == "layernorm_gru" else g.state
    errors.update({f"d{name}": max_rel_err(d[0], t.grad.numpy()) for d, t, name in zip(dstate, (h0, c0), "hc")})
    expected = _ours_from_haste(gate, {k: v.grad for k, v in w.items()})
    errors.update({f"d{k}": max_rel_err(g.params[k], v) for k, v in expected.items()})
    assert_small(errors, 1e-12)


def test_the_norms_matter():
    """The references above mean something: the gains and shifts change the output."""
    rnn = _layer("layernorm_gru")
    x = np.random.default_rng(3).normal(size=(T, B, I))
    y = rnn(x)[0]
    params = rnn.state_dict()
    for name in ("ln_gamma_x_l0", "ln_beta_h_l0"):
        changed = dict(params, **{name: params[name] + 0.5})
        rnn.load_state_dict(changed)
        assert max_rel_err(rnn(x)[0], y) > 1e-3, name
        rnn.load_state_dict(params)


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.parametrize("gate", GATES)
def test_matches_hastes_equations_float32_both_tilings(gate, tiling):
    assert_small(_forward_errors(gate, "float32", clip=0.8), 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("gate", GATES)
def test_layer_gradients_with_clip(gate):
    assert_small(_layer_fd(gate, 0.5), 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("gate", GATES)
def test_bitwise_identical_across_thread_counts(tmp_path, gate):
    from test_family_gates import assert_bitwise_across_thread_counts

    assert_bitwise_across_thread_counts(tmp_path, gate, "rows")  # never hidden-split: not elementwise
