"""Models: recurrent layers plus a dense head, with one parameter dict and one backward.

Three models cover the training stack's tasks:

- :class:`SequenceRegressor` (alias :class:`Forecaster`): ``(B, T, F)`` -> ``(B, O)``
  from the last valid step (sequence-to-one), or ``(B, T, O)`` from every step with
  ``return_sequences=True`` (sequence-to-sequence).
- :class:`SequenceClassifier`: ``(B, T, F)`` (+ ``lengths``) -> logits ``(B, C)``.
- :class:`CharLM`: character ids ``(B, T)`` -> logits ``(B, T, V)`` at every step,
  through an embedding (or one-hot input with ``embedding_dim=None``), carrying the
  recurrent state between calls for truncated BPTT.

**Pooling for sequence-to-one.** Row ``b`` with ``lengths[b] = L`` is summarised by the
top layer's output at its last valid step, ``y[b, L-1]``; bidirectional models use the
forward half of ``y[b, L-1]`` and the reverse half of ``y[b, 0]``, which are exactly the
final forward and reverse states ``h_n[-2]``, ``h_n[-1]`` that PyTorch returns for a
packed batch. The head sees ``num_directions * hidden_size`` features.

**Parameters.** ``model.params`` is a live ``dict``: ``"rnn.<torch name>"``
(``"rnn.weight_ih_l0"``, ...), ``"head.weight"``, ``"head.bias"`` and, for ``CharLM``,
``"embedding.weight"``. The arrays are the layers' own, so optimizers update them in
place. ``backward`` returns a dict with the same keys. Key names and layouts match the
``state_dict`` of the equivalent PyTorch module (``nn.LSTM`` named ``rnn``, ``nn.Linear``
named ``head``, ``nn.Embedding`` named ``embedding``).

**Seeds.** One ``seed`` fixes every initial weight and the rnn's dropout masks; the parts
draw from independent streams derived by :func:`derive_seed`. ``seed=None`` draws a fresh
seed, recorded in ``config()`` so a model can be rebuilt exactly.

Dropout follows PyTorch: between recurrent layers only (``num_layers >= 2``), in training
mode.
"""

from __future__ import annotations

import numpy as np

from lstm_numba.nn import validation
from lstm_numba.nn.heads import Dense, Embedding
from lstm_numba.nn.layers import LSTM
from lstm_numba.nn.parameters import ParameterOwner

__all__ = [
    "SequenceRegressor", "Forecaster", "SequenceClassifier", "CharLM",
    "build_model", "derive_seed", "MODEL_TYPES",
]


def derive_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for ``purpose`` (``"rnn"``, ``"head"``, ``"shuffle"``, ...)
    derived from the one user ``seed`` through ``numpy.random.SeedSequence``."""
    words = [int(seed)] + list(purpose.encode("utf-8"))
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


#: The rnn's regularisers beyond dropout; a model's config holds those that are on.
REGULARISERS = ("zoneout", "zoneout_cell", "recurrent_dropout")


def regularisers(rnn_config: dict) -> dict:
    """The regularisers of ``REGULARISERS`` an rnn's config turns on (absent ones are off)."""
    return {key: rnn_config[key] for key in REGULARISERS if rnn_config.get(key)}


def _fresh_seed() -> int:
    return int(np.random.SeedSequence().generate_state(1, np.uint32)[0])


class _RecurrentModel(ParameterOwner):
    """Shared plumbing: the rnn, the head, the parameter dict, modes and state dicts."""

    type_name = ""

    def __init__(self, input_size, hidden_size, num_layers, *, bidirectional, dropout, dtype,
                 seed, gate, activation, recurrent_activation, num_heads=1, zoneout=0.0, zoneout_cell=0.0,
                 recurrent_dropout=0.0):
        seed = validation.seed("seed", seed)
        self.seed = _fresh_seed() if seed is None else seed
        self.rnn = LSTM(input_size, hidden_size, num_layers, bidirectional=bidirectional,
                        batch_first=True, dropout=dropout, dtype=dtype,
                        seed=derive_seed(self.seed, "rnn"), gate="lstm" if gate is None else gate,
                        activation=activation, recurrent_activation=recurrent_activation, num_heads=num_heads,
                        zoneout=zoneout, zoneout_cell=zoneout_cell, recurrent_dropout=recurrent_dropout)
        self.dtype = self.rnn.dtype
        self.training = True
        self.parts = {"rnn": self.rnn}

    def _finish(self):
        self._params = {f"{part}.{key}": value
                        for part, layer in self.parts.items() for key, value in layer.params.items()}

    def _check_params_live(self) -> None:
        """Raise a ValueError if an entry of ``params`` is no longer the array its layer reads.

        The optimisers update ``params``' arrays and the layers read their own, the same
        arrays: one replaced on either side would leave training updating weights that the
        model never reads.
        """
        for part, layer in self.parts.items():
            for key, value in layer.params.items():
                name = f"{part}.{key}"
                if self._params.get(name) is not value:
                    raise ValueError(f"params[{name!r}]: no longer the array that {part} reads (one of them was "
                                     f"replaced); update parameters in place (params[{name!r}][...] = new) "
                                     "or with load_state_dict")

    # ---------------------------------------------------------------- parameters
    @property
    def features(self) -> int:
        """Width of the rnn's output: ``num_directions * hidden_size``."""
        return self.rnn.num_directions * self.rnn.hidden_size

    @property
    def plugins(self) -> dict:
        """The rnn's plugins: ``{"gate": {"name", "distribution", "version"}, ...}``."""
        return self.rnn.plugins

    # ---------------------------------------------------------------- modes
    def train(self, mode: bool = True):
        self.training = bool(mode)
        self.rnn.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def _need_grad(self, need_grad):
        return self.training if need_grad is None else bool(need_grad)

    # ---------------------------------------------------------------- config
    def _rnn_config(self) -> dict:
        c = self.rnn.config()
        return dict(hidden_size=c["hidden_size"], num_layers=c["num_layers"],
                    bidirectional=c["bidirectional"], dropout=c["dropout"], dtype=c["dtype"],
                    gate=c["gate"], activation=c["activation"],
                    recurrent_activation=c["recurrent_activation"], seed=self.seed,
                    **({} if c["num_heads"] == 1 else {"num_heads": c["num_heads"]}), **regularisers(c))

    def config(self) -> dict:
        """JSON-able constructor arguments plus ``"type"``; :func:`build_model` inverts it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        cfg = self.config()
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items() if k != 'type')})"

    # ---------------------------------------------------------------- helpers
    def _prefixed(self, part: str, grads: dict) -> dict:
        return {f"{part}.{key}": value for key, value in grads.items()}

    def _ordered(self, grads: dict) -> dict:
        return {key: grads[key] for key in self._params}


class SequenceRegressor(_RecurrentModel):
    """Recurrent layers + ``Dense(features, output_size)``, for regression and forecasting.

    ``forward(x, lengths=None)`` with ``x`` ``(B, T, input_size)``: sequence-to-one
    returns ``(B, output_size)`` from each row's last valid step (see the module notes for
    bidirectional); ``return_sequences=True`` returns ``(B, T, output_size)``, the head
    applied at every step (steps past a row's length see zero rnn outputs, as in PyTorch's
    padded output; mask them in the loss).
    """

    type_name = "regressor"

    def __init__(self, input_size: int, output_size: int, hidden_size: int = 32,
                 num_layers: int = 1, *, return_sequences: bool = False,
                 bidirectional: bool = False, dropout: float = 0.0, dtype="float32",
                 seed: int | None = None, gate: str = "lstm", activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", num_heads: int = 1, zoneout: float = 0.0,
                 zoneout_cell: float = 0.0, recurrent_dropout: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, bidirectional=bidirectional,
                         dropout=dropout, dtype=dtype, seed=seed, gate=gate,
                         activation=activation, recurrent_activation=recurrent_activation, num_heads=num_heads,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, recurrent_dropout=recurrent_dropout)
        self.output_size = validation.positive_int("output_size", output_size)
        self.return_sequences = bool(return_sequences)
        self.head = Dense(self.features, self.output_size, self.dtype,
                          np.random.default_rng(derive_seed(self.seed, "head")))
        self.parts["head"] = self.head
        self._finish()
        self._cache = None

    def config(self) -> dict:
        return dict(type=self.type_name, input_size=self.rnn.input_size,
                    output_size=self.output_size, return_sequences=self.return_sequences,
                    **self._rnn_config())

    # ---------------------------------------------------------------- pooling
    def _pool(self, y: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        rows = np.arange(y.shape[0])
        last = y[rows, lengths - 1]
        if not self.rnn.bidirectional:
            return last
        h = self.rnn.hidden_size
        return np.concatenate([last[:, :h], y[:, 0, h:]], axis=1)

    def _unpool(self, dfeat: np.ndarray, shape, lengths: np.ndarray) -> np.ndarray:
        dy = np.zeros(shape, dtype=self.dtype)
        rows = np.arange(shape[0])
        if not self.rnn.bidirectional:
            dy[rows, lengths - 1] = dfeat
        else:
            h = self.rnn.hidden_size
            dy[rows, lengths - 1, :h] = dfeat[:, :h]
            dy[:, 0, h:] += dfeat[:, h:]
        return dy

    def _lengths(self, x, lengths):
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"x: expected a 3-D array (batch, time, features), got shape {x.shape}")
        batch, steps = x.shape[:2]
        if lengths is None:
            return np.full(batch, steps, dtype=np.int64)
        return validation.lengths_array(lengths, batch, steps).astype(np.int64)

    # ---------------------------------------------------------------- forward/backward
    def forward(self, x, lengths=None, *, need_grad=None) -> np.ndarray:
        """Predictions: ``(B, output_size)``, or ``(B, T, output_size)`` with
        ``return_sequences``."""
        self._check_params_live()
        keep = self._need_grad(need_grad)
        lengths_ = self._lengths(x, lengths)
        y, _ = self.rnn.forward(x, lengths=lengths if lengths is None else lengths_, need_grad=keep)
        if self.return_sequences:
            out = self.head.forward(y, need_grad=keep)
        else:
            out = self.head.forward(self._pool(y, lengths_), need_grad=keep)
        self._cache = (y.shape, lengths_) if keep else None
        return out

    __call__ = forward

    def backward(self, dout) -> dict:
        """Gradients of every parameter (keys of ``params``) given ``dL/d(output)``."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() in training mode or with need_grad=True")
        y_shape, lengths = self._cache
        dout = np.asarray(dout, dtype=self.dtype)
        head_grads, dfeat = self.head.backward(dout)
        dy = dfeat if self.return_sequences else self._unpool(dfeat, y_shape, lengths)
        rnn_grads = self.rnn.backward(dy).params
        return self._ordered({**self._prefixed("rnn", rnn_grads), **self._prefixed("head", head_grads)})

    def predict(self, x, lengths=None) -> np.ndarray:
        """Forward without keeping a tape (the mode is left as it is)."""
        return self.forward(x, lengths, need_grad=False)


class Forecaster(SequenceRegressor):
    """A :class:`SequenceRegressor` whose ``output_size`` is the forecast horizon."""

    type_name = "forecaster"


class SequenceClassifier(SequenceRegressor):
    """Recurrent layers + ``Dense(features, num_classes)`` on the last valid step.

    ``forward(x, lengths)`` returns logits ``(B, num_classes)``; train with
    :func:`lstm_numba.nn.losses.softmax_cross_entropy`.
    """

    type_name = "classifier"

    def __init__(self, input_size: int, num_classes: int, hidden_size: int = 32,
                 num_layers: int = 1, **kw):
        if kw.get("return_sequences"):
            raise ValueError("SequenceClassifier classifies whole sequences; return_sequences must be False")
        kw.pop("return_sequences", None)
        super().__init__(input_size, num_classes, hidden_size, num_layers, **kw)

    @property
    def num_classes(self) -> int:
        return self.output_size

    def config(self) -> dict:
        cfg = super().config()
        cfg.pop("return_sequences")
        cfg["num_classes"] = cfg.pop("output_size")
        return cfg

    def predict_proba(self, x, lengths=None) -> np.ndarray:
        """Class probabilities ``(B, num_classes)``."""
        from lstm_numba.nn.losses import softmax

        return softmax(self.predict(x, lengths))


class CharLM(_RecurrentModel):
    """Character language model: embedding (or one-hot) -> rnn -> ``Dense(features, V)``.

    ``forward(ids, state=None)`` with ``ids`` ``(B, T)`` integers in ``[0, vocab_size)``
    returns ``(logits (B, T, V), final_state)``. Pass the returned state to the next
    call to carry it across truncated-BPTT chunks; it is a plain array, so gradients stop
    there (the state is detached). ``embedding_dim=None`` feeds one-hot vectors instead.
    """

    type_name = "charlm"

    def __init__(self, vocab_size: int, hidden_size: int = 128, num_layers: int = 1, *,
                 embedding_dim: int | None = 32, bidirectional: bool = False,
                 dropout: float = 0.0, dtype="float32", seed: int | None = None,
                 gate: str = "lstm", activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", num_heads: int = 1, zoneout: float = 0.0,
                 zoneout_cell: float = 0.0, recurrent_dropout: float = 0.0):
        if bidirectional:
            raise ValueError("a character language model predicts the next character; "
                             "it cannot be bidirectional")
        self.vocab_size = validation.positive_int("vocab_size", vocab_size)
        self.embedding_dim = None if not embedding_dim else validation.positive_int(
            "embedding_dim", embedding_dim)
        input_size = self.embedding_dim or self.vocab_size
        super().__init__(input_size, hidden_size, num_layers, bidirectional=False,
                         dropout=dropout, dtype=dtype, seed=seed, gate=gate,
                         activation=activation, recurrent_activation=recurrent_activation, num_heads=num_heads,
                         zoneout=zoneout, zoneout_cell=zoneout_cell, recurrent_dropout=recurrent_dropout)
        parts = {}
        if self.embedding_dim:
            self.embedding = Embedding(self.vocab_size, self.embedding_dim, self.dtype,
                                       np.random.default_rng(derive_seed(self.seed, "embedding")))
            parts["embedding"] = self.embedding
        else:
            self.embedding = None
        self.head = Dense(self.features, self.vocab_size, self.dtype,
                          np.random.default_rng(derive_seed(self.seed, "head")))
        self.parts = {**parts, "rnn": self.rnn, "head": self.head}
        self._finish()
        self._ids = None

    def config(self) -> dict:
        cfg = dict(type=self.type_name, vocab_size=self.vocab_size,
                   embedding_dim=self.embedding_dim, **self._rnn_config())
        cfg.pop("bidirectional")
        return cfg

    def _inputs(self, ids, keep):
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"ids: expected a 2-D integer array (batch, time), got "
                             f"{ids.dtype} {ids.shape}")
        if self.embedding is not None:
            return self.embedding.forward(ids, need_grad=keep)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids: expected values in [0, {self.vocab_size}), got [{ids.min()}, {ids.max()}]")
        one_hot = np.zeros(ids.shape + (self.vocab_size,), dtype=self.dtype)  # not np.eye(V)[ids]: V*V
        np.put_along_axis(one_hot, ids[..., None], 1, axis=-1)
        return one_hot

    def forward(self, ids, state=None, *, need_grad=None):
        """``(logits (B, T, V), state)``; ``state`` as the rnn takes and returns it."""
        self._check_params_live()
        keep = self._need_grad(need_grad)
        x = self._inputs(ids, keep)
        y, state = self.rnn.forward(x, state, need_grad=keep)
        logits = self.head.forward(y, need_grad=keep)
        self._ids = keep
        return logits, state

    __call__ = forward

    def backward(self, dlogits) -> dict:
        """Gradients of every parameter given ``dL/dlogits`` ``(B, T, V)`` (the carried-in
        state is treated as a constant: truncated BPTT)."""
        if not self._ids:
            raise RuntimeError("backward() needs a forward() in training mode or with need_grad=True")
        dlogits = np.asarray(dlogits, dtype=self.dtype)
        head_grads, dy = self.head.backward(dlogits)
        g = self.rnn.backward(dy)
        grads = {**self._prefixed("rnn", g.params), **self._prefixed("head", head_grads)}
        if self.embedding is not None:
            grads.update(self._prefixed("embedding", self.embedding.backward(g.x)))
        return self._ordered(grads)

    def sample(self, length: int, prime_ids=(), temperature: float = 1.0, rng=None,
               start_id: int | None = None) -> np.ndarray:
        """Sample ``length`` new character ids after ``prime_ids``.

        The prime warms up the state; without one the first input is ``start_id`` (or a
        uniformly drawn id). Each next id is drawn from ``softmax(logits / temperature)``
        with ``rng`` (a ``numpy.random.Generator``; one seed fixes the text). The model
        runs in inference mode and is left in the mode it was in.
        """
        from lstm_numba.nn.losses import softmax

        length = int(length)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
        prime = np.asarray(prime_ids, dtype=np.int64).ravel()
        if prime.size == 0:
            prime = np.array([rng.integers(self.vocab_size) if start_id is None else start_id])
        was_training = self.training
        self.eval()
        try:
            state = None
            if prime.size > 1:
                _, state = self.forward(prime[None, :-1], state, need_grad=False)
            current = int(prime[-1])
            out = np.empty(length, dtype=np.int64)
            for i in range(length):
                logits, state = self.forward(np.array([[current]]), state, need_grad=False)
                p = softmax(logits[0, -1].astype(np.float64), temperature)
                current = int(min(np.searchsorted(np.cumsum(p), rng.random() * p.sum(), side="right"),
                                  self.vocab_size - 1))
                out[i] = current
        finally:
            self.train(was_training)
        return out

    def initial_state(self, batch: int):
        """Zero state for ``batch`` rows, in the form ``forward`` takes."""
        shape = (self.rnn.num_layers, batch, self.rnn.hidden_size)
        zeros = [np.zeros(shape, dtype=self.dtype) for _ in self.rnn.state_names]
        return zeros[0] if len(zeros) == 1 else tuple(zeros)


MODEL_TYPES = {cls.type_name: cls for cls in (SequenceRegressor, Forecaster, SequenceClassifier, CharLM)}


def build_model(config: dict):
    """Rebuild a model from its ``config()``. An ``"rnn"`` entry (the recurrent layer's own
    ``LSTM.config()``, which training checkpoints add for tools) is ignored."""
    config = dict(config)
    config.pop("rnn", None)
    kind = config.pop("type", None)
    if kind == "seq2seq":
        from lstm_numba.nn.seq2seq import Seq2Seq

        return Seq2Seq(config.pop("src_vocab_size"), config.pop("tgt_vocab_size"), **config)
    if kind not in MODEL_TYPES:
        raise ValueError(f"unknown model type {kind!r}; known: {', '.join(sorted(MODEL_TYPES))}")
    cls = MODEL_TYPES[kind]
    if cls is SequenceClassifier:
        return cls(config.pop("input_size"), config.pop("num_classes"), **config)
    if cls is CharLM:
        return cls(config.pop("vocab_size"), **config)
    return cls(config.pop("input_size"), config.pop("output_size"), **config)
