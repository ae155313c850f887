"""ONNX import: the ``LSTM``/``GRU`` nodes of an ONNX file as one ``ln.LSTM``/``ln.GRU``.

``load_onnx(path)`` reads the recurrent nodes (e.g. what ``torch.onnx.export`` writes for an
``nn.LSTM``), checks that they form one stack (each node's input is the previous node's
``Y`` through shape-only operators) with one configuration, and converts the weights back
from ONNX's gate order (the inverse of :mod:`~lstm_numba.interop.onnx_export`'s layouts).
``W``, ``R``, ``B`` and ``P`` must be constants: initializers, ``Constant`` nodes, or
values computed from constants only (evaluated with ``onnx.reference``). Whatever ours
cannot represent is refused with one line naming the node and attribute. Needs the extra ``onnx``.
"""

from __future__ import annotations

import numpy as np

from lstm_numba.interop.common import InteropError, existing_file, require, sniff

#: ONNX activation (lower case) -> (ours, takes alpha, takes beta, ONNX default alpha, beta)
ACTIVATIONS = {
    "sigmoid": ("sigmoid", False, False, None, None), "tanh": ("tanh", False, False, None, None),
    "hardsigmoid": ("hard_sigmoid", True, True, 0.2, 0.5), "relu": ("relu", False, False, None, None),
    "leakyrelu": ("leaky_relu", True, False, 0.01, None), "elu": ("elu", True, False, 1.0, None),
    "softsign": ("softsign", False, False, None, None), "softplus": ("softplus", False, False, None, None),
    "scaledtanh": ("scaled_tanh", True, True, None, None),
}
#: our block k <- ONNX block INVERSE[gate][k]
INVERSE = {"lstm": [0, 2, 3, 1], "peephole": [0, 2, 3, 1], "coupled": [0, 3, 1], "gru": [1, 0, 2]}
PEEPHOLE_INVERSE = [0, 2, 1]   # ours p_i, p_f, p_o <- ONNX p_i, p_o, p_f
#: operators a stack may pass its Y through between layers
PASSTHROUGH = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Flatten", "Cast"}
KNOWN = {"LSTM": {"hidden_size", "direction", "activations", "activation_alpha", "activation_beta", "clip",
                  "input_forget", "layout"},
         "GRU": {"hidden_size", "direction", "activations", "activation_alpha", "activation_beta", "clip",
                 "linear_before_reset", "layout"}}


class _Constants:
    """Values of the graph's constant tensors, computing derived ones on demand."""

    def __init__(self, onnx, graph, opsets):
        self.onnx, self.graph, self.opsets = onnx, graph, list(opsets)
        self.values = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.producer = {out: node for node in graph.node for out in node.output}
        self.graph_inputs = {i.name for i in graph.input} - set(self.values)
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.values[node.output[0]] = self.onnx.numpy_helper.to_array(node.attribute[0].t)

    def get(self, name: str, what: str):
        if name in self.values:
            return self.values[name]
        nodes, seen = [], set()

        def collect(tensor):
            if tensor in self.values or tensor in seen or not tensor:
                return
            if tensor in self.graph_inputs or tensor not in self.producer:
                raise InteropError(f"{what} is not a constant (it depends on the graph input {tensor!r}); "
                                   "load_onnx needs weights stored in the file")
            seen.add(tensor)
            node = self.producer[tensor]
            for parent in node.input:
                collect(parent)
            if node not in nodes:
                nodes.append(node)

        collect(name)
        from onnx.reference import ReferenceEvaluator

        helper = self.onnx.helper
        used = {i for n in nodes for i in n.input if i in self.values}
        inits = [self.onnx.numpy_helper.from_array(np.asarray(self.values[k]), k) for k in sorted(used)]
        out = helper.make_tensor_value_info(name, self.onnx.TensorProto.UNDEFINED, None)
        sub = helper.make_model(helper.make_graph(nodes, "constant", [], [out], inits),
                                opset_imports=self.opsets)
        self.values[name] = ReferenceEvaluator(sub).run(None, {})[0]
        return self.values[name]


def _node_label(node, index: int) -> str:
    return f"{node.op_type} node {node.name or index!r}"


def _activations(node, label, attrs, directions):
    """(ract, act) with their (alpha, beta), one set for every direction, or an InteropError."""
    per = 3 if node.op_type == "LSTM" else 2
    names = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    names = names or (["Sigmoid", "Tanh", "Tanh"][:per] * directions)
    if len(names) != per * directions:
        raise InteropError(f"{label}: activations lists {len(names)} functions, expected {per * directions}")
    alphas, betas = list(attrs.get("activation_alpha", [])), list(attrs.get("activation_beta", []))
    chosen = []
    for name in names:
        spec = ACTIVATIONS.get(name.lower())
        if spec is None:
            raise InteropError(f"{label}: unsupported activation {name!r} (ours: "
                               f"{', '.join(sorted(ACTIVATIONS))})")
        ours, takes_alpha, takes_beta, alpha, beta = spec
        if takes_alpha:
            alpha = alphas.pop(0) if alphas else alpha
        if takes_beta:
            beta = betas.pop(0) if betas else beta
        if ours == "scaled_tanh" and (alpha is None or beta is None):
            raise InteropError(f"{label}: ScaledTanh without activation_alpha/activation_beta (runtimes disagree "
                               "on its defaults)")
        chosen.append((ours, None if alpha is None else float(alpha), None if beta is None else float(beta)))
    sets = [tuple(chosen[d * per:(d + 1) * per]) for d in range(directions)]
    if any(s != sets[0] for s in sets):
        raise InteropError(f"{label}: unsupported activations {names}: the directions differ (ours share one set)")
    if per == 3 and sets[0][1] != sets[0][2]:
        raise InteropError(f"{label}: unsupported activations {names}: g and h differ (ours apply one "
                           "activation to both the candidate and the cell)")
    return sets[0][0], sets[0][1]


def _parse(onnx, constants, node, index):
    """The configuration and per-direction weights of one recurrent node."""
    label = _node_label(node, index)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    unknown = sorted(set(attrs) - KNOWN[node.op_type])
    if unknown:
        raise InteropError(f"{label}: unsupported attribute {unknown[0]!r}")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "bidirectional"):
        raise InteropError(f"{label}: unsupported attribute direction={direction!r} (ours run forward or "
                           "bidirectional)")
    d = 2 if direction == "bidirectional" else 1
    gate = "gru" if node.op_type == "GRU" else "lstm"
    if node.op_type == "GRU" and attrs.get("linear_before_reset", 0) != 1:
        raise InteropError(f"{label}: unsupported attribute linear_before_reset=0 (ours is PyTorch's GRU, "
                           "linear_before_reset=1)")
    inputs = list(node.input) + [""] * 8
    has_p = node.op_type == "LSTM" and bool(inputs[7])
    if node.op_type == "LSTM" and attrs.get("input_forget", 0):
        if has_p:
            raise InteropError(f"{label}: unsupported attributes input_forget=1 with peepholes P (ours: "
                               "coupled or peephole, not both)")
        gate = "coupled"
    elif has_p:
        gate = "peephole"
    (ract, ract_a, ract_b), (act, act_a, act_b) = _activations(node, label, attrs, d)
    w = constants.get(inputs[1], f"{label}: W")
    r = constants.get(inputs[2], f"{label}: R")
    b = constants.get(inputs[3], f"{label}: B") if inputs[3] else None
    p = constants.get(inputs[7], f"{label}: P") if has_p else None
    hidden = int(attrs.get("hidden_size", r.shape[-1]))
    n = 4 if node.op_type == "LSTM" else 3
    if w.ndim != 3 or w.shape[:2] != (d, n * hidden) or r.shape != (d, n * hidden, hidden):
        raise InteropError(f"{label}: W {w.shape} and R {r.shape} do not fit hidden_size={hidden}, {d} direction(s)")
    order = INVERSE[gate]

    def ours(a):
        return np.concatenate([a[k * hidden:(k + 1) * hidden] for k in order], axis=0)

    directions = []
    for k in range(d):
        params = {"weight_ih": ours(w[k]), "weight_hh": ours(r[k])}
        if b is not None:
            params["bias_ih"], params["bias_hh"] = ours(b[k][:n * hidden]), ours(b[k][n * hidden:])
        if p is not None:
            params["weight_peephole"] = np.concatenate([p[k][j * hidden:(j + 1) * hidden] for j in PEEPHOLE_INVERSE])
        directions.append(params)
    config = dict(hidden_size=hidden, bidirectional=d == 2, bias=b is not None, gate=gate,
                  activation=act, recurrent_activation=ract, activation_alpha=act_a, activation_beta=act_b,
                  recurrent_activation_alpha=ract_a, recurrent_activation_beta=ract_b,
                  clip=float(attrs["clip"]) if "clip" in attrs else None,
                  batch_first=bool(attrs.get("layout", 0)))
    return config, w.shape[2], directions, w.dtype


def _feeds_from(constants, node, previous) -> bool:
    """Whether ``node``'s X is ``previous``'s Y through shape-only operators."""
    tensor = node.input[0]
    for _ in range(16):
        if tensor == previous.output[0]:
            return True
        producer = constants.producer.get(tensor)
        if producer is None or producer.op_type not in PASSTHROUGH:
            return False
        tensor = producer.input[0]
    return False


def _batch_first_input(constants, node) -> bool:
    """torch.onnx.export of a batch_first layer: X = Transpose(graph input, perm [1, 0, 2])."""
    producer = constants.producer.get(node.input[0])
    if producer is None or producer.op_type != "Transpose" or producer.input[0] not in constants.graph_inputs:
        return False
    perm = [list(a.ints) for a in producer.attribute if a.name == "perm"]
    return perm == [[1, 0, 2]]


def load_onnx(path):
    """The recurrent nodes of the ONNX file ``path`` as an ``ln.LSTM`` or ``ln.GRU`` (eval mode)."""
    onnx = require("onnx", "onnx", "ONNX import")
    path = existing_file(path, "an ONNX model")
    try:
        model = onnx.load(path)
    except Exception:  # protobuf's DecodeError and friends
        raise InteropError(f"{path}: not an ONNX model ({sniff(path)})") from None
    graph = model.graph
    if not model.opset_import or not (graph.node or graph.input):
        raise InteropError(f"{path}: not an ONNX model ({sniff(path)})")
    nodes = [n for n in graph.node if n.domain in ("", "ai.onnx") and n.op_type in ("LSTM", "GRU", "RNN")]
    if not nodes:
        ops = sorted({n.op_type for n in graph.node})
        raise InteropError(f"{path}: no LSTM or GRU node in the graph (it has {', '.join(ops[:8]) or 'no nodes'})")
    for index, node in enumerate(nodes):
        if node.op_type == "RNN":
            raise InteropError(f"{path}: {_node_label(node, index)}: the plain ONNX RNN is not supported "
                               "(only LSTM and GRU)")
    constants = _Constants(onnx, graph, model.opset_import)
    try:
        parsed = [_parse(onnx, constants, node, index) for index, node in enumerate(nodes)]
    except InteropError as exc:
        raise InteropError(f"{path}: {exc}") from None
    config, input_size, _, dtype = parsed[0]
    for index in range(1, len(nodes)):
        other, width, _, _ = parsed[index]
        label = _node_label(nodes[index], index)
        if {k: v for k, v in other.items() if k != "batch_first"} != {k: v for k, v in config.items()
                                                                        if k != "batch_first"} \
                or nodes[index].op_type != nodes[0].op_type:
            raise InteropError(f"{path}: {label} differs from the first recurrent node "
                               "(ours stack layers of one configuration)")
        if width != config["hidden_size"] * (2 if config["bidirectional"] else 1) or \
                not _feeds_from(constants, nodes[index], nodes[index - 1]):
            raise InteropError(f"{path}: {label} does not read the previous recurrent node's output: "
                               "the recurrent nodes do not form one stack")
    if not config["batch_first"] and _batch_first_input(constants, nodes[0]):
        config["batch_first"] = True
    from lstm_numba.nn.layers import GRU, LSTM

    cls = GRU if config["gate"] == "gru" else LSTM
    dtype = dtype.name if dtype.name in ("float32", "float64") else "float32"
    layer = cls(input_size, num_layers=len(nodes), dtype=dtype, **config)
    state = {}
    for layer_index, (_, _, directions, _) in enumerate(parsed):
        for direction, params in enumerate(directions):
            suffix = f"_l{layer_index}" + ("_reverse" if direction else "")
            state.update({key + suffix: value for key, value in params.items()})
    layer.load_state_dict(state)
    return layer.eval()
