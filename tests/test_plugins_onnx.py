"""ONNX semantics: peepholes, coupled gates (``input_forget=1``), ``clip``, activation lists
and ``sequence_lens``, checked against onnxruntime running ONNX ``LSTM``/``GRU`` graphs built
with ``onnx.helper`` (single layer, bidirectional, float32: onnxruntime's CPU LSTM is float).

Layouts (ours -> ONNX), per direction:

- LSTM gates: ours i, f, g, o (PyTorch) -> ONNX i, o, f, c. ``W`` (4H, I), ``R`` (4H, H),
  ``B`` = [Wb, Rb] (8H,), each in ONNX order.
- Peepholes: ours ``weight_peephole`` = [p_i, p_f, p_o] -> ONNX ``P`` = [p_i, p_o, p_f].
- Coupled: ours i, g, o (3 blocks) -> ONNX i, o, f, c with ``input_forget=1``; the f block
  of W, R and B is ignored by onnxruntime, so the tests fill it with large random values.
- GRU: ours r, z, n (PyTorch) -> ONNX z, r, h with ``linear_before_reset=1`` (b_hn inside
  r * (...), as PyTorch).
- Activations: ONNX LSTM ``[f, g, h]`` = ours [recurrent_activation, activation,
  activation]; GRU ``[f, g]`` = [recurrent_activation, activation]; one list per direction.

What onnxruntime does (onnxruntime/core/providers/cpu/rnn/uni_directional_lstm.cc,
deep_cpu_gru.cc, rnn_helpers.cc), all of which ln matches:

- ``clip`` clamps each gate's full pre-activation, after both biases and, for i and f, the
  peephole term p * c_{t-1} (for o, p_o * c_t) are added; it does not clamp the cell state,
  and h = o * h(c_t) sees the unclamped c_t. For the GRU it clamps z, r and the candidate's
  input x W_h + Wb_h + r * (h R_h + Rb_h).
- ``input_forget=1`` sets f = 1 - i after i's activation, ignoring W_f, R_f, Wb_f, Rb_f and
  p_f altogether.
- Activation alpha/beta lists are consumed in order, only by activations that take them;
  when a list runs out, the defaults are LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, and
  0 for everything else, so ScaledTanh without explicit alpha/beta is identically 0 (ours
  defaults to 1, 1).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import max_rel_err

import lstm_numba as ln

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

T, B, I, H = 5, 3, 3, 4
LENGTHS = np.array([5, 2, 4], dtype=np.int32)
TOL = 2e-5

ONNX_NAMES = {"sigmoid": "Sigmoid", "tanh": "Tanh", "hard_sigmoid": "HardSigmoid", "relu": "Relu",
              "leaky_relu": "LeakyRelu", "elu": "Elu", "softsign": "Softsign", "softplus": "Softplus",
              "scaled_tanh": "ScaledTanh"}
TAKES = {"hard_sigmoid": (True, True), "leaky_relu": (True, False), "elu": (True, False),
         "scaled_tanh": (True, True)}

#: ours block index -> ONNX block position
LSTM_ORDER = [0, 3, 1, 2]       # ONNX i, o, f, c from ours i, f, g, o
PEEPHOLE_ORDER = [0, 2, 1]      # ONNX p_i, p_o, p_f from ours p_i, p_f, p_o
GRU_ORDER = [1, 0, 2]           # ONNX z, r, h from ours r, z, n


def _blocks(a, order, hidden, filler=None):
    """Rows of ``a`` regrouped by H-blocks in ``order``; None in ``order`` takes ``filler``."""
    return np.concatenate([filler if k is None else a[k * hidden:(k + 1) * hidden] for k in order], axis=0)


def _run(op, feeds, attrs, n_out):
    names = list(feeds)
    node = helper.make_node(op, names, ["Y", "Y_h", "Y_c"][:n_out], **attrs)
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}
    inputs = [helper.make_tensor_value_info(k, elem[v.dtype], list(v.shape)) for k, v in feeds.items()]
    shapes = {"Y": ["T", "D", "B", "H"], "Y_h": ["D", "B", "H"], "Y_c": ["D", "B", "H"]}
    outputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, shapes[k]) for k in ["Y", "Y_h", "Y_c"][:n_out]]
    model = helper.make_model(helper.make_graph([node], op.lower(), inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _activation_attrs(names, alphas_betas):
    attrs = {"activations": [ONNX_NAMES[n] for n in names]}
    alphas, betas = [], []
    for name, (alpha, beta) in zip(names, alphas_betas):
        takes_alpha, takes_beta = TAKES.get(name, (False, False))
        if takes_alpha:
            alphas.append(alpha)
        if takes_beta:
            betas.append(beta)
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    return attrs


def _layer_activations(rnn):
    cfg = rnn.config()
    return ((cfg["activation"], (cfg["activation_alpha"], cfg["activation_beta"])),
            (cfg["recurrent_activation"], (cfg["recurrent_activation_alpha"], cfg["recurrent_activation_beta"])))


def onnx_reference(rnn, x, state0, lengths, filler_rng):
    """Run ``rnn`` (1 layer, bidirectional, float32) as an ONNX LSTM/GRU in onnxruntime."""
    sd = rnn.state_dict()
    gate, hidden = rnn.gate_name, rnn.hidden_size
    (act, act_ab), (ract, ract_ab) = _layer_activations(rnn)
    attrs = {"hidden_size": hidden, "direction": "bidirectional"}
    if np.isfinite(rnn.clip):
        attrs["clip"] = rnn.clip
    suffixes = ["_l0", "_l0_reverse"]
    if gate == "gru":
        order = GRU_ORDER
        attrs["linear_before_reset"] = 1
        names, params = [ract, act], [ract_ab, act_ab]
    else:
        order = LSTM_ORDER if gate != "coupled" else [0, 2, None, 1]
        names, params = [ract, act, act], [ract_ab, act_ab, act_ab]
        if gate == "coupled":
            attrs["input_forget"] = 1
    attrs.update(_activation_attrs(names * 2, params * 2))

    def filler(cols):  # the ignored ONNX forget block: large garbage, to show it is ignored
        return (3.0 * filler_rng.normal(size=(hidden, cols) if cols else hidden)).astype(np.float32)

    stack = lambda key, cols: np.stack([_blocks(sd[key + s], order, hidden, filler(cols)) for s in suffixes])  # noqa
    feeds = {
        "X": x,
        "W": stack("weight_ih", x.shape[2]),
        "R": stack("weight_hh", hidden),
        "B": np.concatenate([stack("bias_ih", 0), stack("bias_hh", 0)], axis=1),
        "sequence_lens": lengths.astype(np.int32),
        "initial_h": state0[0],
    }
    if gate != "gru":
        feeds["initial_c"] = state0[1]
    if gate == "peephole":
        feeds["P"] = np.stack([_blocks(sd["weight_peephole" + s], PEEPHOLE_ORDER, hidden) for s in suffixes])
    out = _run("GRU" if gate == "gru" else "LSTM", feeds, attrs, 2 if gate == "gru" else 3)
    y = out[0].transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], 2 * hidden)  # (T, D, B, H) -> (T, B, D*H)
    return y, np.stack(out[1:])


CASES = [
    ("lstm", None, {}),
    ("lstm", 0.5, {}),
    ("peephole", None, {}),
    ("peephole", 0.5, {}),
    ("coupled", None, {}),
    ("coupled", 0.5, {}),
    ("lstm", 0.8, dict(activation="softsign", recurrent_activation="hard_sigmoid")),
    ("gru", None, {}),
    ("gru", 0.5, {}),
]


@pytest.mark.parametrize("gate,clip,activations", CASES,
                         ids=[f"{g}-{'clip' if c else 'noclip'}{'-' + a['activation'] if a else ''}"
                              for g, c, a in CASES])
def test_matches_onnxruntime(gate, clip, activations):
    rnn = ln.LSTM(I, H, bidirectional=True, dtype="float32", seed=4, gate=gate, clip=clip, **activations)
    rnn.eval()
    n_state = len(rnn.state_names)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(T, B, I)).astype(np.float32)
    state0 = (0.5 * rng.normal(size=(n_state, 2, B, H))).astype(np.float32)
    # Scale the weights up so that clip=0.5 and the hard_sigmoid corners are really crossed.
    for value in rnn.params.values():
        value *= 2.0
    y, final = rnn(x, state0[0] if n_state == 1 else tuple(state0), lengths=LENGTHS)
    final = np.asarray(final)[None] if n_state == 1 else np.stack(final)
    y_ref, final_ref = onnx_reference(rnn, x, state0, LENGTHS, rng)
    assert max_rel_err(y, y_ref) < TOL
    for k, name in enumerate(rnn.state_names):
        assert max_rel_err(final[k], final_ref[k]) < TOL, f"Y_{name}"
    if clip is not None:  # the clip really bites: without it the outputs differ
        unclipped = ln.LSTM(I, H, bidirectional=True, dtype="float32", gate=gate, **activations)
        unclipped.load_state_dict(rnn.state_dict())
        assert max_rel_err(unclipped(x, state0[0] if n_state == 1 else tuple(state0), lengths=LENGTHS)[0],
                           y_ref) > 1e-3


def test_onnxruntime_clip_does_not_clamp_the_cell_state():
    """c_t grows past clip while h = o * tanh(c_t) uses it unclamped: ln and onnxruntime agree."""
    rnn = ln.LSTM(I, H, bidirectional=True, dtype="float32", seed=4, gate="lstm", clip=0.5).eval()
    for value in rnn.params.values():
        value *= 2.0
    x = np.random.default_rng(6).normal(size=(T, B, I)).astype(np.float32)
    state0 = np.full((2, 2, B, H), 2.0, dtype=np.float32)
    _, (h_n, c_n) = rnn(x, tuple(state0), lengths=LENGTHS)
    _, final_ref = onnx_reference(rnn, x, state0, LENGTHS, np.random.default_rng(0))
    assert np.abs(c_n).max() > 0.5
    assert max_rel_err(c_n, final_ref[1]) < TOL


def test_onnxruntime_scaled_tanh_without_alpha_beta_is_zero():
    """Documents an export caveat: onnxruntime defaults ScaledTanh's alpha and beta to 0, so
    an exporter must always write them (ours default to 1, 1)."""
    rng = np.random.default_rng(7)
    feeds = {"X": rng.normal(size=(T, B, I)).astype(np.float32),
             "W": rng.normal(size=(1, 4 * H, I)).astype(np.float32),
             "R": rng.normal(size=(1, 4 * H, H)).astype(np.float32)}
    y, _, _ = _run("LSTM", feeds, {"hidden_size": H, "activations": ["Sigmoid", "ScaledTanh", "ScaledTanh"]}, 3)
    assert not y.any()
    y, _, _ = _run("LSTM", feeds, {"hidden_size": H, "activations": ["Sigmoid", "ScaledTanh", "ScaledTanh"],
                                   "activation_alpha": [1.0, 1.0], "activation_beta": [1.0, 1.0]}, 3)
    y_tanh, _, _ = _run("LSTM", feeds, {"hidden_size": H}, 3)
    np.testing.assert_allclose(y, y_tanh, rtol=1e-5, atol=1e-6)
