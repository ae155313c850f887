"""``Seq2Seq``: an attentional encoder-decoder over token ids (Luong et al.'s global attention).

    e  = src_embedding[src]                       (B, S, Es)
    m  = encoder(e)                               (B, S, E)   any gate, bidirectional, layers
    d  = decoder(tgt_embedding[tgt_in])           (B, T, H)   one LSTM call over the target
    c  = attention(d, m)                          (B, T, E)   dot, general or additive
    a  = tanh(combine([c, d]))                    (B, T, H)
    logits = head(a)                              (B, T, V)

Teacher forcing: ``tgt_in`` is ``[bos] + target`` and the loss reads ``target + [eos]``.
The decoder is not fed the previous attention context ("input feeding"), so training runs
the whole target through the compiled LSTM kernels in one call and attends to every step
at once; decoding runs the decoder one step at a time (``LSTM.step``). The decoder starts
from zeros. Parameters: ``src_embedding.weight``, ``tgt_embedding.weight``, ``rnn.*`` (the
encoder, PyTorch's names), ``decoder.*``, ``attention.*``, ``combine.*``, ``head.*``.
"""

from __future__ import annotations

import numpy as np

from lstm_numba.nn import validation
from lstm_numba.nn.attention import Attention
from lstm_numba.nn.decoding import beam_search, greedy_search
from lstm_numba.nn.heads import Dense, Embedding
from lstm_numba.nn.layers import LSTM
from lstm_numba.nn.models import _fresh_seed, derive_seed, regularisers
from lstm_numba.nn.parameters import ParameterOwner

PAD, BOS, EOS = 0, 1, 2  # the first three target ids


class Seq2Seq(ParameterOwner):
    """Encoder-decoder with attention; ``forward(src, src_lengths, tgt_in, tgt_lengths)``
    returns logits ``(B, T, tgt_vocab_size)``; ``translate`` decodes."""

    type_name = "seq2seq"

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embedding_dim: int = 64,
                 hidden_size: int = 128, num_layers: int = 1, *, bidirectional: bool = True,
                 decoder_size: int | None = None, attention: str = "general", dropout: float = 0.0,
                 dtype="float32", seed: int | None = None, gate: str = "lstm", activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", num_heads: int = 1,
                 zoneout: float = 0.0, zoneout_cell: float = 0.0, recurrent_dropout: float = 0.0):
        seed = validation.seed("seed", seed)
        self.seed = _fresh_seed() if seed is None else seed
        self.src_vocab_size = validation.positive_int("src_vocab_size", src_vocab_size)
        self.tgt_vocab_size = validation.positive_int("tgt_vocab_size", tgt_vocab_size)
        self.embedding_dim = validation.positive_int("embedding_dim", embedding_dim)
        self.attention_kind = attention
        rng = lambda purpose: np.random.default_rng(derive_seed(self.seed, purpose))  # noqa: E731
        self.rnn = LSTM(self.embedding_dim, hidden_size, num_layers, bidirectional=bidirectional,
                        batch_first=True, dropout=dropout, dtype=dtype, seed=derive_seed(self.seed, "rnn"),
                        gate=gate, activation=activation, recurrent_activation=recurrent_activation,
                        num_heads=num_heads, zoneout=zoneout, zoneout_cell=zoneout_cell,
                        recurrent_dropout=recurrent_dropout)
        self.dtype = self.rnn.dtype
        memory = self.rnn.num_directions * self.rnn.hidden_size
        self.decoder_size = validation.positive_int("decoder_size", decoder_size or memory)
        self.decoder = LSTM(self.embedding_dim, self.decoder_size, 1, batch_first=True, dtype=dtype,
                            seed=derive_seed(self.seed, "decoder"))
        self.src_embedding = Embedding(self.src_vocab_size, self.embedding_dim, self.dtype, rng("src_embedding"))
        self.tgt_embedding = Embedding(self.tgt_vocab_size, self.embedding_dim, self.dtype, rng("tgt_embedding"))
        self.attention = Attention(attention, self.decoder_size, memory, self.dtype, rng("attention"))
        self.combine = Dense(memory + self.decoder_size, self.decoder_size, self.dtype, rng("combine"))
        self.head = Dense(self.decoder_size, self.tgt_vocab_size, self.dtype, rng("head"))
        self.parts = {"src_embedding": self.src_embedding, "tgt_embedding": self.tgt_embedding,
                      "rnn": self.rnn, "decoder": self.decoder, "attention": self.attention,
                      "combine": self.combine, "head": self.head}
        self._params = {f"{part}.{key}": value for part, layer in self.parts.items()
                        for key, value in layer.params.items()}
        self.training = True
        self._cache = None

    # ---------------------------------------------------------------- config and modes
    @property
    def plugins(self) -> dict:
        return self.rnn.plugins

    def config(self) -> dict:
        c = self.rnn.config()
        return dict(type=self.type_name, src_vocab_size=self.src_vocab_size, tgt_vocab_size=self.tgt_vocab_size,
                    embedding_dim=self.embedding_dim, hidden_size=c["hidden_size"], num_layers=c["num_layers"],
                    bidirectional=c["bidirectional"], decoder_size=self.decoder_size,
                    attention=self.attention_kind, dropout=c["dropout"], dtype=c["dtype"], seed=self.seed,
                    gate=c["gate"], activation=c["activation"], recurrent_activation=c["recurrent_activation"],
                    **({} if c["num_heads"] == 1 else {"num_heads": c["num_heads"]}), **regularisers(c))

    def train(self, mode: bool = True):
        self.training = bool(mode)
        self.rnn.train(mode)
        self.decoder.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # ---------------------------------------------------------------- training
    def encode(self, src, src_lengths, need_grad: bool = False):
        """Encoder outputs ``(B, S, E)`` for ids ``src`` ``(B, S)``."""
        x = self.src_embedding.forward(np.asarray(src), need_grad=need_grad)
        memory, _ = self.rnn.forward(x, lengths=src_lengths, need_grad=need_grad)
        return np.ascontiguousarray(memory)

    def _output(self, h, memory, src_lengths, need_grad):
        context = self.attention.forward(h, memory, src_lengths, need_grad)
        a = np.tanh(self.combine.forward(np.concatenate([context, h], axis=-1), need_grad))
        return a, self.head.forward(a, need_grad)

    def forward(self, src, src_lengths, tgt_in, tgt_lengths, *, need_grad=None):
        """Teacher-forced logits ``(B, T, V)``: ids ``src`` ``(B, S)`` and ``tgt_in`` ``(B, T)``
        with their valid lengths ``(B,)``."""
        keep = self.training if need_grad is None else bool(need_grad)
        src_lengths = np.asarray(src_lengths, dtype=np.int64)
        memory = self.encode(src, src_lengths, keep)
        d = self.tgt_embedding.forward(np.asarray(tgt_in), need_grad=keep)
        h, _ = self.decoder.forward(d, lengths=tgt_lengths, need_grad=keep)
        a, logits = self._output(np.ascontiguousarray(h), memory, src_lengths, keep)
        self._cache = a if keep else None
        return logits

    __call__ = forward

    def backward(self, dlogits) -> dict:
        """Gradients of every parameter (keys of ``params``) given ``dL/dlogits``."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() in training mode or with need_grad=True")
        a = self._cache
        g_head, da = self.head.backward(np.asarray(dlogits, dtype=self.dtype))
        g_combine, dcat = self.combine.backward(da * (1 - a * a))
        width = self.rnn.num_directions * self.rnn.hidden_size
        g_att, dh_att, dmemory = self.attention.backward(dcat[..., :width])
        g_dec = self.decoder.backward(dh_att + dcat[..., width:])
        g_enc = self.rnn.backward(dmemory)
        grads = {"src_embedding": self.src_embedding.backward(g_enc.x),
                 "tgt_embedding": self.tgt_embedding.backward(g_dec.x), "rnn": g_enc.params,
                 "decoder": g_dec.params, "attention": g_att, "combine": g_combine, "head": g_head}
        flat = {f"{part}.{key}": value for part, g in grads.items() for key, value in g.items()}
        return {key: flat[key] for key in self._params}

    # ---------------------------------------------------------------- decoding
    def decoder_step(self, memory, src_lengths):
        """The step function of :mod:`lstm_numba.nn.decoding` over encoder outputs ``memory``;
        its state is ``(decoder stream state, memory, src_lengths)``."""
        def step(tokens, state):
            stream, mem, lengths = state
            x = self.tgt_embedding.forward(tokens, need_grad=False)
            h, stream = self.decoder.step(x, stream)
            _, logits = self._output(np.ascontiguousarray(h[:, None]), mem, lengths, False)
            z = logits[:, 0].astype(np.float64)
            z -= z.max(axis=1, keepdims=True)
            return z - np.log(np.exp(z).sum(axis=1, keepdims=True)), (stream, mem, lengths)
        return step, (None, memory, np.asarray(src_lengths, dtype=np.int64))

    @staticmethod
    def _reorder(state, rows):
        stream, mem, lengths = state
        picked = tuple(s[:, rows] for s in stream.values)
        stream = type(stream)(stream.names, picked, stream.steps)
        return stream, mem[rows], lengths[rows]

    def translate(self, src, src_lengths, *, beam: int = 1, max_len: int = 64,
                  length_penalty: float = 1.0) -> list:
        """Target ids (without bos/eos) for each row of ``src``: greedy (``beam=1``) over the
        whole batch at once, else beam search one row at a time."""
        memory = self.encode(src, src_lengths)
        if beam == 1:
            step, state = self.decoder_step(memory, src_lengths)
            return greedy_search(step, state, len(memory), BOS, EOS, max_len)
        out = []
        for b in range(len(memory)):
            step, state = self.decoder_step(memory[b:b + 1], np.asarray(src_lengths)[b:b + 1])
            state = (self.decoder.initial_state(1), *state[1:])
            out.append(beam_search(step, state, self._reorder, BOS, EOS, max_len, beam, length_penalty))
        return out


def expected_param_shapes(model: dict, gates_of, extra_params) -> dict:
    """``{name: shape}`` of a :meth:`Seq2Seq.config` without building it (the checkpoint
    schema's check): ``gates_of(hidden)`` is the encoder gate's pre-activation width,
    ``extra_params`` its extra parameters as ``(name, blocks)``."""
    hidden, emb = model["hidden_size"], model["embedding_dim"]
    directions = 2 if model["bidirectional"] else 1
    memory = directions * hidden
    dec = model["decoder_size"] or memory
    shapes = {"src_embedding.weight": (model["src_vocab_size"], emb),
              "tgt_embedding.weight": (model["tgt_vocab_size"], emb)}
    for layer in range(model["num_layers"]):
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            width = emb if layer == 0 else memory
            shapes.update({f"rnn.weight_ih{suffix}": (gates_of(hidden), width),
                           f"rnn.weight_hh{suffix}": (gates_of(hidden), hidden),
                           f"rnn.bias_ih{suffix}": (gates_of(hidden),), f"rnn.bias_hh{suffix}": (gates_of(hidden),)})
            shapes.update({f"rnn.{name}{suffix}": (blocks * hidden,) for name, blocks in extra_params})
    shapes.update({"decoder.weight_ih_l0": (4 * dec, emb), "decoder.weight_hh_l0": (4 * dec, dec),
                   "decoder.bias_ih_l0": (4 * dec,), "decoder.bias_hh_l0": (4 * dec,)})
    if model["attention"] == "general":
        shapes["attention.weight"] = (memory, dec)
    elif model["attention"] == "additive":
        shapes.update({"attention.query.weight": (dec, dec), "attention.key.weight": (dec, memory),
                       "attention.v": (dec,)})
    shapes.update({"combine.weight": (dec, memory + dec), "combine.bias": (dec,),
                   "head.weight": (model["tgt_vocab_size"], dec), "head.bias": (model["tgt_vocab_size"],)})
    return shapes
