"""Keras import: a Keras 3 ``.keras`` file as an ``ln.LSTM``/``ln.GRU`` or a model.

A ``.keras`` file is a zip of ``config.json`` (the architecture) and ``model.weights.h5``
(each layer's variables as datasets ``"0"``, ``"1"``, ... under ``layers/lstm/cell/vars``,
``layers/bidirectional/forward_layer/cell/vars`` and ``backward_layer``, ``layers/dense/vars``:
groups named after the layer's class, numbered ``lstm_1``, ... among the model's layers). It is read with ``zipfile`` and ``h5py`` only, never
TensorFlow or Keras. Needs the extra ``keras`` (h5py).

Supported: a Sequential or linear Functional model of stacked ``LSTM``/``GRU`` layers of
one configuration (optionally each wrapped in ``Bidirectional`` with ``merge_mode="concat"``),
then optionally one ``Dense`` head (linear -> ``SequenceRegressor``; softmax ->
``SequenceClassifier``, whose ``predict_proba`` is the Keras output). ``InputLayer`` and
``Dropout`` are skipped (inference). Without a head the layer comes back (batch-first; it
returns every step: Keras' ``return_sequences=False`` output is the forward half of
``y[:, -1]`` and the reverse half of ``y[:, 0]``).

Weights: LSTM ``kernel`` (I, 4U), ``recurrent_kernel`` (U, 4U), ``bias`` (4U,), gates
i, f, c, o (PyTorch's order): ``W_ih = kernel.T``, ``W_hh = recurrent_kernel.T``,
``b_ih = bias``, ``b_hh = 0``. GRU gates z, r, h -> ours r, z, n; ``reset_after=True`` is
PyTorch's GRU, with ``bias`` (2, 3U) = [input bias, recurrent bias]; ``reset_after=False``
is refused. Keras 3's ``hard_sigmoid`` is relu6(x + 3) / 6 (alpha 1/6, beta 0.5) and its
``leaky_relu`` slope is 0.2.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np

from lstm_numba.interop.common import InteropError, existing_file, require, sniff

#: Keras activation -> (ours, alpha, beta); None: our defaults
ACTIVATIONS = {"tanh": ("tanh", None, None), "sigmoid": ("sigmoid", None, None),
               "hard_sigmoid": ("hard_sigmoid", 1.0 / 6.0, 0.5), "relu": ("relu", None, None),
               "softsign": ("softsign", None, None), "softplus": ("softplus", None, None),
               "elu": ("elu", 1.0, None), "leaky_relu": ("leaky_relu", 0.2, None)}
RECURRENT = ("LSTM", "GRU")
SKIPPED = ("InputLayer", "Dropout")
#: ours r, z, n <- Keras z, r, h
GRU_ORDER = [1, 0, 2]


def _activation(label: str, value) -> tuple:
    name = value if isinstance(value, str) else (value or {}).get("config", {}).get("name", value)
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise InteropError(f"{label} {name!r} is not supported (ours: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _read(path: str):
    """(config dict, h5py File) of a .keras archive, or a one-line InteropError."""
    h5py = require("h5py", "keras", "Keras import")
    if not zipfile.is_zipfile(path):
        hint = "; a Keras 2 HDF5 model: re-save it with Keras 3 as .keras" if sniff(path).startswith("an HDF5") else ""
        raise InteropError(f"{path}: not a Keras 3 .keras file ({sniff(path)}{hint})")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if not {"config.json", "model.weights.h5"} <= names:
            raise InteropError(f"{path}: not a Keras 3 .keras file (a zip without config.json and "
                               f"model.weights.h5; it holds {', '.join(sorted(names)[:4]) or 'nothing'})")
        try:
            config = json.loads(archive.read("config.json"))
        except ValueError as exc:
            raise InteropError(f"{path}: config.json is not JSON ({exc})") from None
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    return config, weights


def _snake_case(name: str) -> str:
    """Keras' ``naming.to_snake_case``: the weights file names layers by class, not by name."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layers(path: str, config: dict) -> list:
    """The model's layers in order, each with ``"_h5"``: its group in model.weights.h5
    (``layers/<snake_case(class)>[_<k>]``, counted over the model's layers, as Keras saves)."""
    kind = config.get("class_name")
    if kind not in ("Sequential", "Functional", "Model"):
        raise InteropError(f"{path}: a Keras {kind!r} is not supported (a Sequential or Functional model)")
    layers = list(config.get("config", {}).get("layers", []))
    if kind == "Sequential" and layers and layers[0].get("class_name") == "InputLayer":
        layers = layers[1:]  # Sequential.layers leaves its InputLayer out
    used = {}
    for layer in layers:
        name = _snake_case(str(layer.get("class_name")))
        used[name] = used.get(name, -1) + 1
        layer["_h5"] = "layers/" + (name if used[name] == 0 else f"{name}_{used[name]}")
    layers = [layer for layer in layers if layer.get("class_name") not in SKIPPED]
    for layer in layers:  # a Functional model must be one chain
        inbound = layer.get("inbound_nodes") or []
        if len(inbound) > 1 or (inbound and len(inbound[0].get("args", [])) > 1):
            raise InteropError(f"{path}: layer {layer.get('config', {}).get('name')!r} has several inputs; only a "
                               "linear stack of layers is supported")
    return layers


def _vars(path, weights, group: str, count: int) -> list:
    if group not in weights:
        raise InteropError(f"{path}: model.weights.h5 has no {group!r} (the weights do not match config.json)")
    found = weights[group]
    if any(str(k) not in found for k in range(count)):
        raise InteropError(f"{path}: {group!r} holds {sorted(found)}; expected {count} variables")
    return [np.asarray(found[str(k)]) for k in range(count)]


def _recurrent(path, weights, layer: dict):
    """(settings, per-direction torch-named params, input size) of one LSTM/GRU/Bidirectional."""
    name = layer.get("config", {}).get("name")
    groups = [f"{layer['_h5']}/cell/vars"]
    inner = layer
    if layer["class_name"] == "Bidirectional":
        merge = layer["config"].get("merge_mode", "concat")
        if merge != "concat":
            raise InteropError(f"{path}: Bidirectional {name!r} has merge_mode={merge!r}; only 'concat' is supported")
        inner = layer["config"]["layer"]
        if inner.get("class_name") not in RECURRENT:
            raise InteropError(f"{path}: Bidirectional {name!r} wraps a {inner.get('class_name')!r}; "
                               "only LSTM and GRU are supported")
        groups = [f"{layer['_h5']}/forward_layer/cell/vars", f"{layer['_h5']}/backward_layer/cell/vars"]
    cls, c = inner["class_name"], inner["config"]
    label = f"{cls} {name!r}"
    if c.get("go_backwards") and layer is inner:
        raise InteropError(f"{path}: {label} has go_backwards=True; a lone reversed layer is not supported")
    if cls == "GRU" and not c.get("reset_after", True):
        raise InteropError(f"{path}: {label} has reset_after=False, which is not PyTorch's GRU "
                           "(ours applies the reset gate after the recurrent product); re-train with reset_after=True")
    act, act_alpha, act_beta = _activation(f"{path}: {label}: activation", c.get("activation", "tanh"))
    ract, ract_alpha, ract_beta = _activation(f"{path}: {label}: recurrent_activation",
                                              c.get("recurrent_activation", "sigmoid"))
    units, bias = int(c["units"]), bool(c.get("use_bias", True))
    directions = []
    for group in groups:
        vars_ = _vars(path, weights, group, 3 if bias else 2)
        kernel, recurrent = vars_[0], vars_[1]
        if cls == "LSTM":
            params = {"weight_ih": kernel.T, "weight_hh": recurrent.T}
            if bias:
                params.update(bias_ih=vars_[2], bias_hh=np.zeros_like(vars_[2]))
        else:
            def ours(a):  # (3U, ...) in Keras z, r, h -> ours r, z, n
                return np.concatenate([a[k * units:(k + 1) * units] for k in GRU_ORDER])

            params = {"weight_ih": ours(kernel.T), "weight_hh": ours(recurrent.T)}
            if bias:
                b = vars_[2].reshape(2, 3 * units)
                params.update(bias_ih=ours(b[0]), bias_hh=ours(b[1]))
        directions.append(params)
    settings = dict(gate=cls.lower(), hidden_size=units, bidirectional=len(groups) == 2, bias=bias,
                    activation=act, recurrent_activation=ract, activation_alpha=act_alpha,
                    activation_beta=act_beta, recurrent_activation_alpha=ract_alpha,
                    recurrent_activation_beta=ract_beta)
    return settings, directions, kernel.shape[0], bool(c.get("return_sequences", False)), label


def load_keras(path):
    """A Keras 3 ``.keras`` file as an ``ln.LSTM``/``ln.GRU``, a ``SequenceRegressor`` or a
    ``SequenceClassifier`` with the same weights (float32, batch-first, eval mode)."""
    path = existing_file(path, "a Keras 3 .keras file")
    config, weights = _read(path)
    try:
        layers = _layers(path, config)
        stack, head = [], None
        for index, layer in enumerate(layers):
            kind = layer.get("class_name")
            if kind in RECURRENT + ("Bidirectional",) and head is None:
                stack.append(_recurrent(path, weights, layer))
            elif kind == "Dense" and head is None and stack and index == len(layers) - 1:
                head = layer
            else:
                where = "after the Dense head" if head is not None else "before the recurrent layers" \
                    if not stack else "between the recurrent layers and the head"
                raise InteropError(f"{path}: layer {layer.get('config', {}).get('name')!r} ({kind}) is not "
                                   f"supported {where} (supported: LSTM, GRU, Bidirectional, one Dense head)")
        if not stack:
            raise InteropError(f"{path}: no LSTM or GRU layer in the model")
        return _build(path, weights, stack, head)
    finally:
        weights.close()


def _build(path, weights, stack, head):
    from lstm_numba.nn.layers import GRU, LSTM
    from lstm_numba.nn.models import SequenceClassifier, SequenceRegressor

    settings, _, input_size, _, _ = stack[0]
    for index, (other, _, width, returns, label) in enumerate(stack):
        if other != settings:
            raise InteropError(f"{path}: {label} differs from the first recurrent layer (ours stack layers of one "
                               "configuration: units, activations, bias, direction, cell)")
        if index < len(stack) - 1 and not returns:
            raise InteropError(f"{path}: {label} has return_sequences=False but feeds another recurrent layer")
    return_sequences = stack[-1][3]
    state = {}
    for layer_index, (_, directions, _, _, _) in enumerate(stack):
        for direction, params in enumerate(directions):
            suffix = f"_l{layer_index}" + ("_reverse" if direction else "")
            state.update({key + suffix: value for key, value in params.items()})
    if head is None:
        cls = GRU if settings["gate"] == "gru" else LSTM
        layer = cls(input_size, num_layers=len(stack), batch_first=True, **settings)
        layer.load_state_dict(state)
        return layer.eval()

    c = head["config"]
    activation = c.get("activation", "linear")
    activation = activation if isinstance(activation, str) else activation.get("config", {}).get("name")
    if activation not in ("linear", "softmax") or (activation == "softmax" and return_sequences):
        raise InteropError(f"{path}: Dense {c.get('name')!r} has activation {activation!r}; supported: linear "
                           "(a regressor) or softmax on the last step (a classifier)")
    from lstm_numba import registry

    for role in ("activation", "recurrent_activation"):  # models take no activation alpha/beta
        defaults = registry.get_activation(settings[role]).obj
        wanted = (settings[f"{role}_alpha"], settings[f"{role}_beta"])
        if any(w is not None and w != d for w, d in zip(wanted, (defaults.alpha, defaults.beta))):
            raise InteropError(f"{path}: {role} {settings[role]!r} with Keras' parameters {wanted} needs the "
                               "layer's activation alpha/beta, which lstm-numba models do not take; "
                               "load the recurrent layers without the Dense head")
    dense = _vars(path, weights, f"{head['_h5']}/vars", 2 if c.get("use_bias", True) else 1)
    units = int(c["units"])
    kw = dict(hidden_size=settings["hidden_size"], num_layers=len(stack), bidirectional=settings["bidirectional"],
              gate=settings["gate"], activation=settings["activation"],
              recurrent_activation=settings["recurrent_activation"], dtype="float32")
    if activation == "softmax":
        model = SequenceClassifier(input_size, units, **kw)
    else:
        model = SequenceRegressor(input_size, units, return_sequences=return_sequences, **kw)
    if not settings["bias"]:  # our models always have biases: zeros are the same network
        for key in [k for k in model.rnn.params if k.startswith("bias_")]:
            state[key] = np.zeros_like(model.rnn.params[key])
    params = {f"rnn.{k}": v for k, v in state.items()}
    params["head.weight"] = dense[0].T
    params["head.bias"] = dense[1] if len(dense) == 2 else np.zeros(units, dtype=np.float32)
    model.load_state_dict(params)
    return model.eval()
