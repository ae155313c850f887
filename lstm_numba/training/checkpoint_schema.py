"""The schema of a training checkpoint's metadata, checked before anything is built from it.

:func:`lstm_numba.training.trainer.read_training_checkpoint` calls :func:`check_structure`
(types, ranges and agreement of every field the trainer, ``predict``, ``generate`` and
``profile`` read) after :func:`check_plugin_entries` and the check that the plugins are
installed, then :func:`check_arrays` (the
arrays the metadata promises: every parameter with the shape and dtype the model
configuration implies, the optimizer buffers, the best weights exactly when a best epoch
is recorded). Each failure is a :class:`~lstm_numba.training.checkpoint.CheckpointError`
naming the file and the field (``progress.epoch: expected an integer >= 0, got 'abc'``).

A version-2 checkpoint's digests (:mod:`lstm_numba.training.checkpoint`) already refuse a
file edited after writing; this schema refuses what a consistent rewrite (or a version-1
file, or a bug in a writer) could still get wrong: sizes that would exhaust memory
before the arrays could disagree, ``epochs=0``, ``lr=-1``, a target index out of range.
"""

from __future__ import annotations

import math
import re

from lstm_numba.nn.models import MODEL_TYPES, REGULARISERS
from lstm_numba.training import optim, schedules
from lstm_numba.training.checkpoint import CheckpointError, rng_from_json

#: The model type each task trains.
TASK_MODELS = {"forecast": "forecaster", "classify": "classifier", "charlm": "charlm", "translate": "seq2seq"}
_DTYPES = ("float32", "float64")
_ROLES = ("gate", "activation", "recurrent_activation")
_PROGRESS = {"epoch", "step", "best_val", "best_epoch", "bad_epochs", "finished", "stopped_early"}


class _Checker:
    """Field checks that raise a CheckpointError naming the file and the field."""

    def __init__(self, path):
        self.path = path

    def fail(self, field: str, expected: str, value=None, *, got: str | None = None):
        shown = got if got is not None else _short_repr(value)
        raise CheckpointError(self.path, f"{field}: expected {expected}, got {shown}")

    def dict(self, field, value, required=(), allowed=None) -> dict:
        if not isinstance(value, dict):
            self.fail(field, "an object", value, got=type(value).__name__)
        missing = [key for key in required if key not in value]
        if missing:
            raise CheckpointError(self.path, f"{field}: missing {', '.join(map(repr, missing))}")
        if allowed is not None:
            unexpected = sorted(set(value) - set(allowed))
            if unexpected:
                raise CheckpointError(self.path, f"{field}: unexpected {', '.join(map(repr, unexpected))}")
        return value

    def int(self, field, value, minimum=0, maximum=None, none=False):
        if value is None and none:
            return None
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
        if ok and maximum is not None:
            ok = value <= maximum
        if not ok:
            bound = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
            self.fail(field, bound + (" or null" if none else ""), value)
        return value

    def number(self, field, value, minimum=None, maximum=None, *, open_min=False, open_max=False, none=False):
        if value is None and none:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and minimum is not None:
            ok = value > minimum if open_min else value >= minimum
        if ok and maximum is not None:
            ok = value < maximum if open_max else value <= maximum
        if not ok:
            parts = ["a finite number"]
            if minimum is not None:
                parts.append(f"{'>' if open_min else '>='} {minimum}")
            if maximum is not None:
                parts.append(f"{'<' if open_max else '<='} {maximum}")
            self.fail(field, " ".join(parts) + (" or null" if none else ""), value)
        return value

    def bool(self, field, value, none=False):
        if not (isinstance(value, bool) or (none and value is None)):
            self.fail(field, "true or false" + (" or null" if none else ""), value)
        return value

    def str(self, field, value, none=False, choices=None):
        if value is None and none:
            return None
        if not isinstance(value, str) or not value:
            self.fail(field, "a non-empty string" + (" or null" if none else ""), value)
        if choices is not None and value not in choices:
            self.fail(field, f"one of {', '.join(map(repr, choices))}", value)
        return value

    def same(self, field, value, other_field, other):
        if value != other:
            raise CheckpointError(self.path, f"{field} is {_short_repr(value)} but {other_field} is "
                                             f"{_short_repr(other)}; they must agree")


def _short_repr(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------- structure

def check_structure(path, meta: dict) -> None:
    """Types, ranges and agreement of the metadata's fields (no arrays, no plugins loaded)."""
    c = _Checker(path)
    c.dict("meta", meta, required=("kind", "task", "model", "train", "plugins", "data", "progress",
                                   "history", "rng", "schedule"))
    c.str("lstm_numba_version", meta.get("lstm_numba_version", "?"))
    task = c.str("task", meta["task"], choices=tuple(TASK_MODELS))
    model = _check_model(c, meta["model"], task)
    train = _check_train(c, meta["train"], task, model)
    _check_plugins(c, meta["plugins"], model)
    _check_data(c, meta["data"], task, model, train)
    progress = _check_progress(c, meta["progress"])
    history = meta["history"]
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        c.fail("history", "a list of per-epoch records", history, got=type(history).__name__)
    if len(history) != progress["epoch"]:
        raise CheckpointError(path, f"history has {len(history)} records but progress.epoch is "
                                    f"{progress['epoch']}; they must agree")
    for i, record in enumerate(history):
        if record.get("epoch") != i + 1:
            c.fail(f"history[{i}].epoch", f"{i + 1}", record.get("epoch"))
    rng = c.dict("rng", meta["rng"], required=("shuffle", "dropout"))
    for key in ("shuffle", "dropout"):
        try:
            rng_from_json(rng[key])
        except Exception as exc:  # whatever a malformed bit-generator state raises
            raise CheckpointError(path, f"rng.{key}: not a random generator state "
                                        f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    _check_schedule(c, meta["schedule"], train, progress)


def _check_model(c: _Checker, model, task) -> dict:
    kind = TASK_MODELS[task]
    common = ("type", "hidden_size", "num_layers", "dropout", "dtype", "gate", "activation",
              "recurrent_activation", "seed")
    own = {"forecaster": ("input_size", "output_size", "return_sequences", "bidirectional"),
           "classifier": ("input_size", "num_classes", "bidirectional"),
           "charlm": ("vocab_size", "embedding_dim"),
           "seq2seq": ("src_vocab_size", "tgt_vocab_size", "embedding_dim", "bidirectional", "decoder_size",
                       "attention")}[kind]
    c.dict("model", model, required=common + own, allowed=common + own + ("rnn", "num_heads") + REGULARISERS)
    c.same("model.type", c.str("model.type", model["type"], choices=(*MODEL_TYPES, "seq2seq")),
           "the task's model type", kind)
    for key in ("hidden_size", "num_layers"):
        c.int(f"model.{key}", model[key], minimum=1)
    heads = c.int("model.num_heads", model.get("num_heads"), minimum=1, none=True) or 1  # absent: 1
    if model["hidden_size"] % heads:
        c.fail("model.num_heads", f"a divisor of model.hidden_size={model['hidden_size']}", heads)
    for key in ("input_size", "output_size", "num_classes", "vocab_size", "src_vocab_size", "tgt_vocab_size",
                "decoder_size"):
        if key in own:
            c.int(f"model.{key}", model[key], minimum=2 if key == "num_classes" else 1)
    if kind == "seq2seq":
        c.int("model.embedding_dim", model["embedding_dim"], minimum=1)
        c.str("model.attention", model["attention"], choices=("dot", "general", "additive"))
    if kind == "charlm":
        c.int("model.embedding_dim", model["embedding_dim"], minimum=1, none=True)
    else:
        c.bool("model.bidirectional", model["bidirectional"])
    if kind == "forecaster":
        c.bool("model.return_sequences", model["return_sequences"])
    for key in ("dropout",) + REGULARISERS:  # the regularisers: absent when off
        c.number(f"model.{key}", model.get(key, 0.0), 0.0, 1.0, open_max=True)
    c.str("model.dtype", model["dtype"], choices=_DTYPES)
    for role in _ROLES:
        c.str(f"model.{role}", model[role])
    c.int("model.seed", model["seed"])
    if "rnn" in model:
        _check_rnn(c, model)
    return model


def _check_rnn(c: _Checker, model) -> None:
    keys = ("input_size", "hidden_size", "num_layers", "bidirectional", "batch_first", "bias", "dropout",
            "dtype", "seed", "gate", "activation", "recurrent_activation", "activation_alpha",
            "activation_beta", "recurrent_activation_alpha", "recurrent_activation_beta", "clip")
    rnn = c.dict("model.rnn", model["rnn"], required=keys, allowed=keys + ("proj_size", "num_heads") + REGULARISERS)
    for key in REGULARISERS:
        c.same(f"model.rnn.{key}", rnn.get(key, 0.0), f"model.{key}", model.get(key, 0.0))
    c.int("model.rnn.proj_size", rnn.get("proj_size"), minimum=0, none=True)  # 0: no projection (PyTorch)
    c.int("model.rnn.num_heads", rnn.get("num_heads"), minimum=1, none=True)  # 1: a full W_hh
    c.same("model.rnn.num_heads", rnn.get("num_heads") or 1, "model.num_heads", model.get("num_heads") or 1)
    inputs = model.get("input_size") or model.get("embedding_dim") or model.get("vocab_size")
    c.same("model.rnn.input_size", rnn["input_size"], "the model's input size", inputs)
    for key in ("hidden_size", "num_layers", "dropout", "dtype", "gate", "activation", "recurrent_activation"):
        c.same(f"model.rnn.{key}", rnn[key], f"model.{key}", model[key])
    c.same("model.rnn.bidirectional", rnn["bidirectional"], "model.bidirectional", model.get("bidirectional", False))
    c.same("model.rnn.batch_first", rnn["batch_first"], "what the models use", True)
    c.same("model.rnn.bias", rnn["bias"], "what the models use", True)
    for key in ("activation_alpha", "activation_beta", "recurrent_activation_alpha", "recurrent_activation_beta"):
        c.number(f"model.rnn.{key}", rnn[key])
    c.number("model.rnn.clip", rnn["clip"], 0.0, open_min=True, none=True)
    c.int("model.rnn.seed", rnn["seed"])


def _check_train(c: _Checker, train, task, model) -> dict:
    c.dict("train", train, required=("task", "epochs", "batch_size", "lr", "optimizer", "gate", "hidden_size",
                                     "layers", "dtype", "seed", "schedule"))
    c.same("train.task", train["task"], "task", task)
    c.str("train.data", train.get("data"), none=True)
    c.str("train.target", train.get("target"), none=True)
    columns = train.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(n, str) and n for n in columns)):
        c.fail("train.columns", "null or a list of column names", columns)
    for key in ("window", "horizon", "season"):
        c.int(f"train.{key}", train.get(key), minimum=1, none=True)
    c.bool("train.relative", train.get("relative"), none=True)
    c.bool("train.seq2seq", train.get("seq2seq", False))
    c.number("train.val_fraction", train.get("val_fraction", 0.2), 0.0, 1.0, open_min=True, open_max=True)
    for key, model_key in (("hidden_size", "hidden_size"), ("layers", "num_layers"), ("dtype", "dtype"),
                           ("gate", "gate"), ("activation", "activation"),
                           ("recurrent_activation", "recurrent_activation"), ("dropout", "dropout")):
        if key in train:
            c.same(f"train.{key}", train[key], f"model.{model_key}", model[model_key])
    c.same("train.bidirectional", train.get("bidirectional", False), "model.bidirectional",
           model.get("bidirectional", False))
    for key in REGULARISERS:  # absent from files written before them: off
        c.same(f"train.{key}", train.get(key, 0.0), f"model.{key}", model.get(key, 0.0))
    c.int("train.embedding_dim", train.get("embedding_dim"), minimum=0, none=True)
    c.int("train.epochs", train["epochs"], minimum=1)
    c.int("train.batch_size", train["batch_size"], minimum=1)
    c.number("train.lr", train["lr"], 0.0, open_min=True)
    c.str("train.optimizer", train["optimizer"], choices=tuple(sorted(optim.OPTIMIZERS)))
    c.number("train.momentum", train.get("momentum", 0.9), 0.0)
    c.number("train.weight_decay", train.get("weight_decay"), 0.0, none=True)
    c.number("train.clip_grad", train.get("clip_grad"), 0.0, open_min=True, none=True)
    c.str("train.schedule", train["schedule"], choices=("none", *schedules.SCHEDULES))
    c.int("train.seed", train["seed"])
    c.int("train.patience", train.get("patience"), minimum=0, none=True)
    c.bool("train.restore_best", train.get("restore_best", True))
    return train


def check_plugin_entries(path, plugins) -> None:
    """The ``plugins`` block's shape (checked before the plugins are looked up)."""
    c = _Checker(path)
    c.dict("plugins", plugins, required=_ROLES, allowed=_ROLES)
    for role in _ROLES:
        info = c.dict(f"plugins.{role}", plugins[role], required=("name",))
        c.str(f"plugins.{role}.name", info["name"])
        c.str(f"plugins.{role}.distribution", info.get("distribution"), none=True)
        if info.get("version") not in (None, "") and not isinstance(info.get("version"), str):
            c.fail(f"plugins.{role}.version", "a string", info.get("version"))


def _check_plugins(c: _Checker, plugins, model) -> None:
    check_plugin_entries(c.path, plugins)
    for role in _ROLES:
        name = plugins[role]["name"]
        short = model[role].rpartition(":")[2]
        if name != short and name != model[role]:
            c.same(f"plugins.{role}.name", name, f"model.{role}", model[role])


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _normalizer(c: _Checker, field, value, width) -> None:
    c.dict(field, value, required=("mean", "std"))
    for key, minimum in (("mean", None), ("std", 0.0)):
        values = value[key]
        if not isinstance(values, list) or len(values) != width:
            c.fail(f"{field}.{key}", f"a list of {width} numbers", values)
        for i, v in enumerate(values):
            c.number(f"{field}.{key}[{i}]", v, minimum, open_min=minimum is not None)


def _check_data(c: _Checker, data, task, model, train) -> None:
    c.dict("data", data)
    c.str("data.path", data.get("path"), none=True)
    sha = data.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        c.fail("data.sha256", "null or 64 hexadecimal digits", sha)
    if task == "forecast":
        c.dict("data", data, required=("columns", "target", "target_index", "normalizer", "relative", "window",
                                       "horizon"))
        columns = data["columns"]
        if (not isinstance(columns, list) or not columns or not all(isinstance(n, str) and n for n in columns)
                or len(set(columns)) != len(columns)):
            c.fail("data.columns", "a non-empty list of distinct column names", columns)
        c.same("data.columns", len(columns), "model.input_size (the number of columns)", model["input_size"])
        index = c.int("data.target_index", data["target_index"], 0, len(columns) - 1)
        c.same("data.target", c.str("data.target", data["target"]), f"data.columns[{index}]", columns[index])
        _normalizer(c, "data.normalizer", data["normalizer"], len(columns))
        c.bool("data.relative", data["relative"])
        c.int("data.window", data["window"], minimum=1)
        c.int("data.horizon", data["horizon"], minimum=1)
        c.int("data.season", data.get("season"), minimum=1, none=True)
        c.int("data.n_train_points", data.get("n_train_points", 1), minimum=1)
        for key in ("window", "horizon", "relative"):
            if train.get(key) is not None:
                c.same(f"data.{key}", data[key], f"train.{key}", train[key])
        c.same("data.horizon", data["horizon"], "model.output_size", model["output_size"])
    elif task == "classify":
        c.dict("data", data, required=("normalizer", "num_classes", "input_size"))
        c.same("data.num_classes", c.int("data.num_classes", data["num_classes"], minimum=2),
               "model.num_classes", model["num_classes"])
        c.same("data.input_size", c.int("data.input_size", data["input_size"], minimum=1),
               "model.input_size", model["input_size"])
        _normalizer(c, "data.normalizer", data["normalizer"], data["input_size"])
    elif task == "translate":
        c.dict("data", data, required=("src_vocab", "tgt_vocab", "max_len", "beam", "length_penalty"))
        for side in ("src", "tgt"):
            tokens = c.dict(f"data.{side}_vocab", data[f"{side}_vocab"], required=("tokens",))["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
                c.fail(f"data.{side}_vocab.tokens", "a list of tokens", tokens)
            c.same(f"data.{side}_vocab.tokens", len(tokens), f"model.{side}_vocab_size", model[f"{side}_vocab_size"])
        c.int("data.max_len", data["max_len"], minimum=1)
        c.int("data.beam", data["beam"], minimum=1)
        c.number("data.length_penalty", data["length_penalty"], 0.0)
    else:
        c.dict("data", data, required=("vocab",))
        vocab = c.dict("data.vocab", data["vocab"], required=("chars",))
        chars = vocab["chars"]
        if (not isinstance(chars, list) or not chars or not all(isinstance(ch, str) and len(ch) == 1 for ch in chars)
                or len(set(chars)) != len(chars)):
            c.fail("data.vocab.chars", "a non-empty list of distinct single characters", chars)
        c.same("data.vocab.chars", len(chars), "model.vocab_size (the vocabulary's size)", model["vocab_size"])


def _check_progress(c: _Checker, progress) -> dict:
    c.dict("progress", progress, required=tuple(sorted(_PROGRESS)), allowed=_PROGRESS)
    epoch = c.int("progress.epoch", progress["epoch"])
    c.int("progress.step", progress["step"], minimum=epoch)
    best_epoch = c.int("progress.best_epoch", progress["best_epoch"], 0, epoch)
    c.int("progress.bad_epochs", progress["bad_epochs"], 0, epoch)
    c.number("progress.best_val", progress["best_val"], none=True)
    if (progress["best_val"] is None) != (best_epoch == 0):
        raise CheckpointError(c.path, f"progress.best_val is {_short_repr(progress['best_val'])} but "
                                      f"progress.best_epoch is {best_epoch}; a best epoch has a best loss")
    c.bool("progress.finished", progress["finished"])
    c.bool("progress.stopped_early", progress["stopped_early"])
    return progress


def _check_schedule(c: _Checker, schedule, train, progress) -> None:
    if train["schedule"] == "none":
        if schedule is not None:
            c.fail("schedule", "null (train.schedule is 'none')", schedule, got=type(schedule).__name__)
        return
    kind = train["schedule"]
    cls = schedules.SCHEDULES[kind]
    c.dict("schedule", schedule, required=("type", *cls._scalars), allowed=("type", *cls._scalars))
    c.same("schedule.type", schedule["type"], "train.schedule", kind)
    c.number("schedule.base_lr", schedule["base_lr"], 0.0, open_min=True)
    c.same("schedule.last_epoch", c.int("schedule.last_epoch", schedule["last_epoch"]), "progress.epoch",
           progress["epoch"])
    if kind == "cosine":
        c.int("schedule.T_max", schedule["T_max"], minimum=1)
        c.number("schedule.eta_min", schedule["eta_min"], 0.0)
    else:
        c.int("schedule.step_size", schedule["step_size"], minimum=1)
        c.number("schedule.gamma", schedule["gamma"], 0.0)


# ---------------------------------------------------------------- arrays

def expected_params(model: dict, gate) -> dict:
    """``{name: shape}`` of the parameters a model configuration implies, for ``gate`` (a
    :class:`lstm_numba.contract.Gate`); the caller has checked the sizes."""
    if model["type"] == "seq2seq":
        from lstm_numba.nn.seq2seq import expected_param_shapes

        return expected_param_shapes(model, lambda hidden: gate.n_blocks * hidden,
                                     [(e.name, e.blocks) for e in gate.extra_params])
    hidden, layers = model["hidden_size"], model["num_layers"]
    directions = 2 if model.get("bidirectional") else 1
    n_gates = gate.n_blocks * hidden
    heads = model.get("num_heads") or 1
    # with heads, W_hh is stored as its diagonal blocks (see lstm_numba.nn.recurrent_heads)
    recurrent = (n_gates, hidden) if heads == 1 else (heads, n_gates // heads, hidden // heads)
    inputs = model.get("input_size") or model.get("embedding_dim") or model.get("vocab_size")
    shapes = {}
    if model["type"] == "charlm" and model.get("embedding_dim"):
        shapes["embedding.weight"] = (model["vocab_size"], model["embedding_dim"])
    for layer in range(layers):
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            width = inputs if layer == 0 else hidden * directions
            shapes[f"rnn.weight_ih{suffix}"] = (n_gates, width)
            shapes[f"rnn.weight_hh{suffix}"] = recurrent
            shapes[f"rnn.bias_ih{suffix}"] = (n_gates,)
            shapes[f"rnn.bias_hh{suffix}"] = (n_gates,)
            for extra in gate.extra_params:
                shapes[f"rnn.{extra.name}{suffix}"] = (extra.blocks * hidden,)
    outputs = model.get("output_size") or model.get("num_classes") or model.get("vocab_size")
    shapes["head.weight"] = (outputs, hidden * directions)
    shapes["head.bias"] = (outputs,)
    return shapes


def _count_params(model: dict, gate) -> int:
    if model["type"] == "seq2seq":
        return len(expected_params(model, gate))
    directions = 2 if model.get("bidirectional") else 1
    per_slot = 4 + len(gate.extra_params)
    embedding = 1 if model["type"] == "charlm" and model.get("embedding_dim") else 0
    return model["num_layers"] * directions * per_slot + 2 + embedding


def check_arrays(path, ckpt, gate) -> None:
    """The arrays the metadata promises: parameters (names, shapes, the model's dtype),
    optimizer buffers and best weights."""
    meta, model = ckpt.meta, ckpt.meta["model"]
    dtype = model["dtype"]
    expected_count = _count_params(model, gate)
    if len(ckpt.params) != expected_count:  # before listing the names: num_layers may be huge
        raise CheckpointError(path, f"model (hidden_size={model['hidden_size']}, num_layers={model['num_layers']}) "
                                    f"implies {expected_count} parameter arrays, the file holds {len(ckpt.params)}")
    shapes = expected_params(model, gate)
    for key, shape in shapes.items():
        if key not in ckpt.params:
            raise CheckpointError(path, f"param/{key} is missing (the model configuration implies it)")
        array = ckpt.params[key]
        if tuple(array.shape) != shape:
            raise CheckpointError(path, f"param/{key} has shape {tuple(array.shape)}, but the model configuration "
                                        f"(model.hidden_size={model['hidden_size']}, ...) implies {shape}")
        if array.dtype.name != dtype:
            raise CheckpointError(path, f"param/{key} is {array.dtype}, but model.dtype is {dtype!r}")
    unexpected = sorted(set(ckpt.params) - set(shapes))
    if unexpected:
        raise CheckpointError(path, f"param/{unexpected[0]} is not a parameter of the model")
    best = {k[len("best/"):]: v for k, v in ckpt.extra.items() if k.startswith("best/")}
    others = sorted(k for k in ckpt.extra if not k.startswith("best/"))
    if others:
        raise CheckpointError(path, f"unexpected array extra/{others[0]}")
    best_epoch = meta["progress"]["best_epoch"]
    if best_epoch and not best:
        raise CheckpointError(path, f"progress.best_epoch is {best_epoch} but the best weights (extra/best/...) "
                                    "are missing")
    if best and not best_epoch:
        raise CheckpointError(path, "best weights (extra/best/...) are present but progress.best_epoch is 0")
    if best:
        if set(best) != set(shapes):
            odd = sorted(set(best) ^ set(shapes))
            raise CheckpointError(path, f"the best weights do not cover the parameters (extra/best/{odd[0]})")
        for key, array in best.items():
            if tuple(array.shape) != shapes[key] or array.dtype.name != dtype:
                raise CheckpointError(path, f"extra/best/{key} is {array.dtype} {tuple(array.shape)}, expected "
                                            f"{dtype} {shapes[key]}")
    _check_optimizer(path, ckpt, shapes, dtype)


def _check_optimizer(path, ckpt, shapes, dtype) -> None:
    state = ckpt.optim_state
    if state is None:
        return
    c = _Checker(path)
    train = ckpt.meta["train"]
    c.same("optim.type", state.get("type"), "train.optimizer", train["optimizer"])
    c.number("optim.lr", state.get("lr"), 0.0)
    c.number("optim.weight_decay", state.get("weight_decay", 0.0), 0.0)
    if state["type"] == "sgd":
        c.number("optim.momentum", state.get("momentum"), 0.0)
        c.number("optim.dampening", state.get("dampening"))
        c.bool("optim.nesterov", state.get("nesterov"))
    else:
        betas = state.get("betas")
        if not isinstance(betas, list) or len(betas) != 2:
            c.fail("optim.betas", "a pair of numbers in [0, 1)", betas)
        for i, beta in enumerate(betas):
            c.number(f"optim.betas[{i}]", beta, 0.0, 1.0, open_max=True)
        c.number("optim.eps", state.get("eps"), 0.0)
        c.bool("optim.amsgrad", state.get("amsgrad"))
        c.same("optim.num_steps", c.int("optim.num_steps", state.get("num_steps")), "progress.step",
               ckpt.meta["progress"]["step"])
    for key, value in state.items():
        if "/" not in key:
            continue
        buffer, _, name = key.partition("/")
        if name not in shapes:
            raise CheckpointError(path, f"optim/{key} is for {name!r}, which is not a parameter of the model")
        if tuple(value.shape) != shapes[name] or value.dtype.name != dtype:
            raise CheckpointError(path, f"optim/{key} is {value.dtype} {tuple(value.shape)}, expected "
                                        f"{dtype} {shapes[name]}")
