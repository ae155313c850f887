"""ONNX export: layers, models and trained checkpoints as ONNX ``LSTM``/``GRU`` graphs.

``export_onnx(obj, path)`` takes an ``ln.LSTM``/``ln.GRU``, a model (``Forecaster``,
``SequenceRegressor``, ``SequenceClassifier``, ``CharLM``), a :class:`~lstm_numba.training.trainer.Trained`
from ``load_trained`` or a checkpoint path; a trained one carries its task's own input
normalisation and, for a forecaster, the de-normalisation of ``lstm-numba predict``.
docs/onnx.md lists the opset, the graph inputs and outputs, and the layouts (ours -> ONNX):

- LSTM blocks i, f, g, o -> i, o, f, c in ``W`` [D, 4H, I], ``R`` [D, 4H, H] and
  ``B`` [D, 8H] = [Wb, Rb]; peephole [p_i, p_f, p_o] -> ``P`` [D, 3H] = [p_i, p_o, p_f];
  coupled i, g, o -> i, o, (f: zeros, ignored), c with ``input_forget=1`` (f = 1 - i, ours);
- GRU r, z, n -> z, r, h with ``linear_before_reset=1`` (PyTorch's GRU);
- one node per layer (``num_layers``), ``direction``, ``clip``, ``activations`` with their
  ``activation_alpha``/``activation_beta`` (written for every activation that takes them:
  onnxruntime defaults ScaledTanh's to 0); ``batch_first`` as Transpose nodes, since
  onnxruntime rejects ``layout=1``.

Weights are written as float32: onnxruntime's CPU LSTM and GRU are float-only. Needs the
extra ``onnx``.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from lstm_numba.interop.common import (
    InteropError,
    describe,
    is_layer,
    is_model,
    require,
)

DEFAULT_OPSET = 17
MIN_OPSET = 14  # LSTM-14/GRU-14 (layout attribute), Reshape-14, Add-14
EXPORTABLE_GATES = ("lstm", "peephole", "coupled", "gru")

#: our activation -> (ONNX name, takes alpha, takes beta)
ACTIVATIONS = {
    "sigmoid": ("Sigmoid", False, False), "tanh": ("Tanh", False, False),
    "hard_sigmoid": ("HardSigmoid", True, True), "relu": ("Relu", False, False),
    "leaky_relu": ("LeakyRelu", True, False), "elu": ("Elu", True, False),
    "softsign": ("Softsign", False, False), "softplus": ("Softplus", False, False),
    "scaled_tanh": ("ScaledTanh", True, True),
}

#: ONNX block position -> our block index (None: a block ONNX needs and we lack, zeros)
BLOCK_ORDER = {"lstm": [0, 3, 1, 2], "peephole": [0, 3, 1, 2], "coupled": [0, 2, None, 1], "gru": [1, 0, 2]}
PEEPHOLE_ORDER = [0, 2, 1]  # ONNX p_i, p_o, p_f from ours p_i, p_f, p_o
_WHY_NOT = {"slstm": "its exponential input gate and its normaliser and stabiliser states (h, c, n, m) "
                     "have no ONNX operator"}


def _onnx():
    onnx = require("onnx", "onnx", "ONNX export")
    return onnx


def check_exportable(layer) -> None:
    """Raise an :class:`InteropError` saying why ``layer`` has no ONNX equivalent, if it has none."""
    gate = layer.gate_name
    if gate not in EXPORTABLE_GATES:
        why = _WHY_NOT.get(gate, "ONNX's LSTM and GRU nodes express only the lstm, peephole, coupled "
                                 "and gru gates")
        raise InteropError(f"cannot export gate {gate!r} to ONNX: {why}")
    if layer.zoneout or layer.zoneout_cell:
        raise InteropError("cannot export zoneout to ONNX: in evaluation each state is (1 - p) * new + p * previous, "
                           "which ONNX's LSTM and GRU nodes do not express (recurrent dropout, the identity in "
                           "evaluation, exports)")
    for label, entry, _ in layer._activations:
        if entry.name not in ACTIVATIONS or entry.distribution != "lstm-numba":
            raise InteropError(f"cannot export {label} {entry.name!r} to ONNX: ONNX's recurrent nodes take "
                               f"only {', '.join(ACTIVATIONS)}")


class _Graph:
    """Nodes, initializers, inputs and outputs of one graph, with fresh names."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._count = 0

    def fresh(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value, dtype=np.float32) -> str:
        name = self.fresh(stem)
        array = np.array(value, dtype=dtype, order="C")  # (not ascontiguousarray: it makes 0-d arrays 1-d)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs, n_out: int = 1, stem: str | None = None, outputs=None, **attrs):
        outputs = outputs or [self.fresh(stem or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), list(outputs),
                                                name=self.fresh(op_type), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    def input(self, name: str, elem, shape) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def output(self, name: str, source: str, elem, shape) -> str:
        self.op("Identity", [source], outputs=[name])
        self.outputs.append(self.helper.make_tensor_value_info(name, elem, list(shape)))
        return name

    def model(self, name: str, opset: int, metadata: dict):
        graph = self.helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        opsets = [self.helper.make_opsetid("", opset)]
        model = self.helper.make_model(graph, opset_imports=opsets, producer_name="lstm-numba",
                                       ir_version=self.helper.find_min_ir_version_for(opsets))
        self.helper.set_model_props(model, {"lstm_numba": json.dumps(metadata)})
        self.onnx.checker.check_model(model, full_check=True)
        return model


# ---------------------------------------------------------------------------- the recurrent stack
def _blocks(array, order, hidden):
    parts = [np.zeros((hidden,) + array.shape[1:], dtype=array.dtype) if k is None
             else array[k * hidden:(k + 1) * hidden] for k in order]
    return np.concatenate(parts, axis=0)


def _activation_attrs(layer) -> dict:
    (_, act, act_ab), (_, ract, ract_ab) = layer._activations
    per_direction = [(ract.name, ract_ab), (act.name, act_ab)]
    if layer.gate_name != "gru":
        per_direction.append((act.name, act_ab))
    if [name for name, _ in per_direction] == ["sigmoid", "tanh", "tanh"][:len(per_direction)]:
        return {}
    names, alphas, betas = [], [], []
    for name, (alpha, beta) in per_direction * layer.num_directions:
        onnx_name, takes_alpha, takes_beta = ACTIVATIONS[name]
        names.append(onnx_name)
        if takes_alpha:
            alphas.append(float(alpha))
        if takes_beta:
            betas.append(float(beta))
    attrs = {"activations": names}
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    return attrs


def _layer_weights(layer, index: int) -> dict:
    """W, R, B (and P) of layer ``index``, stacked over directions, in ONNX order, float32."""
    state, hidden, gate = layer.state_dict(), layer.hidden_size, layer.gate_name
    order = BLOCK_ORDER[gate]
    suffixes = [f"_l{index}"] + ([f"_l{index}_reverse"] if layer.bidirectional else [])
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    weights = {"W": np.stack([_blocks(f32(state["weight_ih" + s]), order, hidden) for s in suffixes]),
               "R": np.stack([_blocks(f32(state["weight_hh" + s]), order, hidden) for s in suffixes])}
    if layer.bias:
        weights["B"] = np.stack([np.concatenate([_blocks(f32(state["bias_ih" + s]), order, hidden),
                                                 _blocks(f32(state["bias_hh" + s]), order, hidden)])
                                 for s in suffixes])
    if gate == "peephole":
        weights["P"] = np.stack([_blocks(f32(state["weight_peephole" + s]), PEEPHOLE_ORDER, hidden)
                                 for s in suffixes])
    return weights


def recurrent_stack(g: _Graph, layer, x: str, lengths: str | None, h0: str | None, c0: str | None):
    """Nodes running ``layer`` on time-major ``x`` (T, B, I); returns (y (T, B, D*H), h_n, c_n or None)
    with the final states (L*D, B, H), as ``layer.forward`` returns them."""
    check_exportable(layer)
    gate, d = layer.gate_name, layer.num_directions
    op_type = "GRU" if gate == "gru" else "LSTM"
    attrs = {"hidden_size": layer.hidden_size,
             "direction": "bidirectional" if layer.bidirectional else "forward", **_activation_attrs(layer)}
    if math.isfinite(layer.clip):
        attrs["clip"] = float(layer.clip)
    if gate == "gru":
        attrs["linear_before_reset"] = 1
    if gate == "coupled":
        attrs["input_forget"] = 1
    finals_h, finals_c = [], []
    for index in range(layer.num_layers):
        w = _layer_weights(layer, index)
        names = {key: g.const(f"{key}_l{index}", value) for key, value in w.items()}

        def states(source):
            if source is None:
                return ""
            starts, ends = g.const("starts", [index * d], np.int64), g.const("ends", [(index + 1) * d], np.int64)
            return g.op("Slice", [source, starts, ends, g.const("axes", [0], np.int64)], stem=f"{source}_l{index}")

        inputs = [x, names["W"], names["R"], names.get("B", ""), lengths or "", states(h0)]
        if op_type == "LSTM":
            inputs += [states(c0), names.get("P", "")]
        while inputs[-1] == "":
            inputs.pop()
        n_out = 3 if op_type == "LSTM" else 2
        outs = g.op(op_type, inputs, n_out=n_out, stem=f"{op_type.lower()}_l{index}", **attrs)
        y = g.op("Transpose", [outs[0]], perm=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
        x = g.op("Reshape", [y, g.const("shape", [0, 0, -1], np.int64)], stem=f"y_l{index}")
        finals_h.append(outs[1])
        if op_type == "LSTM":
            finals_c.append(outs[2])
    concat = lambda parts, stem: parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=0, stem=stem)  # noqa
    return x, concat(finals_h, "h_n"), concat(finals_c, "c_n") if finals_c else None


# ---------------------------------------------------------------------------- graphs
def _layer_graph(g: _Graph, layer, sequence_lens: bool, initial_state: bool) -> None:
    T = g.onnx.TensorProto
    i, h, ld = layer.input_size, layer.hidden_size, layer.num_layers * layer.num_directions
    outer = ["batch", "time"] if layer.batch_first else ["time", "batch"]
    x = g.input("X", T.FLOAT, outer + [i])
    if layer.batch_first:
        x = g.op("Transpose", [x], perm=[1, 0, 2])
    lengths = g.input("sequence_lens", T.INT32, ["batch"]) if sequence_lens else None
    two = len(layer.state_names) == 2
    h0 = g.input("initial_h", T.FLOAT, [ld, "batch", h]) if initial_state else None
    c0 = g.input("initial_c", T.FLOAT, [ld, "batch", h]) if initial_state and two else None
    y, h_n, c_n = recurrent_stack(g, layer, x, lengths, h0, c0)
    if layer.batch_first:
        y = g.op("Transpose", [y], perm=[1, 0, 2])
    g.output("Y", y, T.FLOAT, outer + [layer.num_directions * h])
    g.output("Y_h", h_n, T.FLOAT, [ld, "batch", h])
    if two:
        g.output("Y_c", c_n, T.FLOAT, [ld, "batch", h])


def _dense(g: _Graph, head, x: str, matrix: bool) -> str:
    """``x @ weight.T + bias``: Gemm for (B, in), MatMul + Add for (B, T, in)."""
    weight = np.asarray(head.params["weight"], dtype=np.float32)
    bias = head.params.get("bias")
    if matrix:
        inputs = [x, g.const("head_weight", weight)] + ([g.const("head_bias", bias)] if bias is not None else [])
        return g.op("Gemm", inputs, transB=1, stem="head")
    y = g.op("MatMul", [x, g.const("head_weight_t", weight.T)], stem="head")
    return g.op("Add", [y, g.const("head_bias", bias)], stem="head") if bias is not None else y


def _normalise(g: _Graph, x: str, normalizer) -> str:
    mean = g.const("mean", np.asarray(normalizer["mean"], dtype=np.float64))
    std = g.const("std", np.asarray(normalizer["std"], dtype=np.float64))
    return g.op("Div", [g.op("Sub", [x, mean]), std], stem="x_norm")


def _sequence_model_graph(g: _Graph, model, sequence_lens, trained=None) -> None:
    """Regressor, forecaster, classifier: (B, T, F) -> (B, O) or (B, T, O)."""
    T = g.onnx.TensorProto
    rnn, f = model.rnn, model.rnn.input_size
    ld = rnn.num_layers * rnn.num_directions
    forecast = trained is not None and trained.task == "forecast"
    x = g.input("values" if forecast else "x", T.FLOAT, ["batch", "time", f])
    x_norm = None
    if trained is not None:
        x = x_norm = _normalise(g, x, trained.data["normalizer"])
        if forecast and trained.data["relative"]:
            last = g.op("Slice", [x, g.const("starts", [-1], np.int64), g.const("ends", [2 ** 62], np.int64),
                                  g.const("axes", [1], np.int64)], stem="last_step")
            x = g.op("Sub", [x, last], stem="x_relative")
    lengths = g.input("lengths", T.INT32, ["batch"]) if sequence_lens else None
    y, h_n, _ = recurrent_stack(g, rnn, g.op("Transpose", [x], perm=[1, 0, 2]), lengths, None, None)
    classifier = model.config()["type"] == "classifier"
    if getattr(model, "return_sequences", False):
        out = _dense(g, model.head, g.op("Transpose", [y], perm=[1, 0, 2]), matrix=False)  # (B, T, O)
        shape = ["batch", "time", model.output_size]
        if forecast:  # the last step forecasts the horizon, as lstm-numba predict does
            out = g.op("Gather", [out, g.const("last", -1, np.int64)], axis=1)
            shape = ["batch", model.output_size]
    else:
        # the top layer's final states are the pooled features: forward at each row's last
        # valid step, reverse at step 0 (see lstm_numba.nn.models)
        top = h_n if ld == rnn.num_directions else g.op(
            "Slice", [h_n, g.const("starts", [ld - rnn.num_directions], np.int64),
                      g.const("ends", [ld], np.int64), g.const("axes", [0], np.int64)], stem="top")
        feat = g.op("Reshape", [g.op("Transpose", [top], perm=[1, 0, 2]), g.const("shape", [0, -1], np.int64)],
                    stem="features")
        out = _dense(g, model.head, feat, matrix=True)
        shape = ["batch", model.output_size]
    if forecast:
        d, t = trained.data, trained.data["target_index"]
        if d["relative"]:
            level = g.op("Slice", [x_norm, g.const("starts", [-1, t], np.int64), g.const("ends", [2 ** 62, t + 1], np.int64),
                                   g.const("axes", [1, 2], np.int64)], stem="last_target")
            out = g.op("Add", [out, g.op("Reshape", [level, g.const("shape", [-1, 1], np.int64)])])
        out = g.op("Add", [g.op("Mul", [out, g.const("std_target", d["normalizer"]["std"][t])]),
                           g.const("mean_target", d["normalizer"]["mean"][t])], stem="forecast")
        g.output("forecast", out, T.FLOAT, shape)
    elif classifier:
        g.output("logits", out, T.FLOAT, shape)
        g.output("probabilities", g.op("Softmax", [out], axis=-1), T.FLOAT, shape)
    else:
        g.output("prediction", out, T.FLOAT, shape)


def _charlm_graph(g: _Graph, model, initial_state: bool) -> None:
    T = g.onnx.TensorProto
    rnn, v = model.rnn, model.vocab_size
    ld, h = rnn.num_layers, rnn.hidden_size
    ids = g.input("ids", T.INT64, ["batch", "time"])
    table = model.embedding.params["weight"] if model.embedding is not None else np.eye(v)
    x = g.op("Gather", [g.const("embedding", table), ids], axis=0, stem="embedded")  # (B, T, E)
    two = len(rnn.state_names) == 2
    h0 = g.input("h0", T.FLOAT, [ld, "batch", h]) if initial_state else None
    c0 = g.input("c0", T.FLOAT, [ld, "batch", h]) if initial_state and two else None
    y, h_n, c_n = recurrent_stack(g, rnn, g.op("Transpose", [x], perm=[1, 0, 2]), None, h0, c0)
    logits = _dense(g, model.head, g.op("Transpose", [y], perm=[1, 0, 2]), matrix=False)
    g.output("logits", logits, T.FLOAT, ["batch", "time", v])
    g.output("probabilities", g.op("Softmax", [logits], axis=-1), T.FLOAT, ["batch", "time", v])
    g.output("h_n", h_n, T.FLOAT, [ld, "batch", h])
    if two:
        g.output("c_n", c_n, T.FLOAT, [ld, "batch", h])


# ---------------------------------------------------------------------------- entry point
def _resolve(obj):
    """(layer or model, Trained or None) from whatever export_onnx was given."""
    from lstm_numba.training.trainer import Trained, load_trained

    if isinstance(obj, (str, os.PathLike)):
        obj = load_trained(obj)
    if isinstance(obj, Trained):
        return obj.model, obj
    if is_layer(obj) or is_model(obj):
        return obj, None
    raise InteropError(f"export_onnx: expected an lstm-numba layer, model, trained checkpoint or its path, "
                       f"got {describe(obj)} (it has no recurrent layer to export)")


def export_onnx(obj, path, *, opset: int = DEFAULT_OPSET, sequence_lens: bool | None = None,
                initial_state: bool = False, preprocess: bool = True):
    """Write ``obj`` as an ONNX model to ``path``; returns the ``onnx.ModelProto``.

    obj            ``ln.LSTM``/``ln.GRU``, a model, a ``Trained`` (``load_trained``) or a
                   checkpoint path
    opset          the default ONNX opset (14 or later)
    sequence_lens  add the per-row lengths input (``sequence_lens`` for a layer, ``lengths``
                   for a model; int32); default: only for a trained classifier
    initial_state  add initial-state inputs (``initial_h``/``initial_c`` for a layer, ``h0``/``c0``
                   for a CharLM; the other models always start from zeros, as ours do)
    preprocess     for a trained checkpoint, include its input normalisation (and a
                   forecaster's de-normalisation to original units); False exports the
                   bare model
    """
    onnx = _onnx()
    target, source = _resolve(obj)
    trained = source if preprocess else None
    opset = int(opset)
    if not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise InteropError(f"opset {opset}: expected {MIN_OPSET}..{onnx.defs.onnx_opset_version()} "
                           "(the onnx package installed knows up to the latter)")
    kind = "layer" if is_layer(target) else target.config()["type"]
    if sequence_lens is None:
        sequence_lens = trained is not None and trained.task == "classify"
    if kind == "charlm" and sequence_lens:
        raise InteropError("sequence_lens: a character LM runs every step of its ids; export it without lengths")
    if trained is not None and trained.task == "forecast" and sequence_lens:
        raise InteropError("sequence_lens (lengths): a trained forecaster reads whole windows of `window` steps; "
                           "export it without lengths")
    if kind not in ("layer", "charlm") and initial_state:
        raise InteropError(f"initial_state: a {kind} starts every sequence from a zero state (its forward takes "
                           "none); only layers and character LMs take an initial state")
    check_exportable(target if kind == "layer" else target.rnn)
    g = _Graph(onnx)
    if kind == "layer":
        _layer_graph(g, target, sequence_lens, initial_state)
    elif kind == "charlm":
        _charlm_graph(g, target, initial_state)
    else:
        _sequence_model_graph(g, target, sequence_lens, trained)
    metadata = {"kind": kind, "config": target.config(), "opset": opset,
                "inputs": [i.name for i in g.inputs], "outputs": [o.name for o in g.outputs]}
    if source is not None:  # what a runtime needs around the graph: vocabulary, normaliser, columns
        metadata.update(task=source.task, preprocess=trained is not None,
                        data={k: v for k, v in source.data.items() if k not in ("path", "sha256")})
    model = g.model(f"lstm_numba_{kind}", opset, metadata)
    onnx.save(model, os.fspath(path))
    return model
