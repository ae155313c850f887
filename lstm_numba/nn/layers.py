"""The public recurrent layers: :class:`LSTM` (any gate plugin) and :class:`GRU`.

Shapes and parameter names follow ``torch.nn.LSTM``/``torch.nn.GRU``, so a PyTorch
``state_dict`` (converted to NumPy) loads unchanged.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass

import numpy as np
from numba.core import errors as numba_errors

from lstm_numba import registry
from lstm_numba.engine import layout
from lstm_numba.engine.codegen import load_kernels
from lstm_numba.engine.direction import backward_direction, forward_direction
from lstm_numba.engine.scan import ScanTape, scan_backward_direction, scan_forward_direction
from lstm_numba.nn import memory, recurrent_heads, validation
from lstm_numba.nn import recurrent_dropout as recurrent_dropout_module
from lstm_numba.nn import zoneout as zoneout_module
from lstm_numba.nn.parameters import ParameterOwner, check_live


def _source_file_of(entry) -> str:
    """The file of the module a plugin lives in (what Numba's complaints quote), or a
    string no message contains."""
    module = sys.modules.get(entry.target.partition(":")[0])
    return getattr(module, "__file__", None) or "\0"


def compiler_complaint(text: str) -> str:
    """The first informative line of a Numba error, its pipeline banners ("Failed in
    nopython mode pipeline ...") and blank lines skipped; a line ending in a colon is
    joined with the next (the signature it announces). At most 300 characters."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Failed in ", "During: "))]
    if not lines:
        return "compilation failed"
    first = lines[0]
    if first.endswith(":") and len(lines) > 1:
        first = f"{first} {lines[1]}"
    return first if len(first) <= 300 else first[:297] + "..."


def _complaint_location(text: str, path: str) -> str:
    """" at FILE line N" for the first line of ``path`` a Numba error quotes, else ""."""
    name = os.path.basename(path)
    for quoted, line in re.findall(r'File "([^"]+)", line (\d+)', text):
        if os.path.basename(quoted) == name:
            return f" at {name} line {line}"
    return ""


@dataclass
class Gradients:
    """Gradients of the last forward.

    params  dict with the keys and shapes of ``state_dict()``; a direction's weight
            gradients are column views of one (G, I + 1 + H) array (not C-contiguous)
    x       dLoss/dx, shaped like x
    state   dLoss/d(initial state): ``(dh0, dc0)`` for two-state gates, ``dh0`` for GRU
    """

    params: dict
    x: np.ndarray
    state: object


class StreamState:
    """Where a stream stands: the layer's state after ``steps`` steps of a sequence.

    ``LSTM.initial_state`` makes one and ``LSTM.step`` returns the next.

    values  one array per state vector, in the gate's ``state_names`` order, each
            (num_layers, B, H) (``h`` of a projected LSTM is (num_layers, B, proj_size))
    steps   how many steps of the sequence the stream has consumed (its next step's index)
    state   the state as ``forward`` takes and returns it: ``(h, c)``, or ``h`` for a
            single-state gate
    ``state.h``, ``state.c`` (any state name) are the vectors by name.
    """

    def __init__(self, names: tuple, values: tuple, steps: int = 0):
        self.names = tuple(names)
        self.values = tuple(values)
        self.steps = int(steps)

    @property
    def state(self):
        return self.values[0] if len(self.values) == 1 else tuple(self.values)

    def __getattr__(self, name):
        names = self.__dict__.get("names", ())
        if name in names:
            return self.__dict__["values"][names.index(name)]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}={v.shape}" for n, v in zip(self.names, self.values))
        return f"StreamState({shapes}, steps={self.steps})"


@dataclass(frozen=True)
class _Slot:
    """One (layer, direction) and the state_dict keys of its parameters."""

    layer: int
    direction: int
    input_size: int

    @property
    def suffix(self) -> str:
        return f"_l{self.layer}" + ("_reverse" if self.direction else "")


class LSTM(ParameterOwner):
    """A multi-layer, optionally bidirectional recurrent layer with a pluggable gate.

    Parameters follow ``torch.nn.LSTM``, ``proj_size`` included (h_t = W_hr h'_t, P values,
    for a gate declared ``projectable``); ``gate``, ``activation`` and
    ``recurrent_activation`` (Keras names) choose plugins by name, ``*_alpha``/``*_beta``
    set ONNX-style activation parameters, and ``clip`` clamps gate pre-activations as
    ONNX's ``clip`` does. ``zoneout`` and ``zoneout_cell`` (probabilities) apply zoneout to
    h and to the cell state c (:mod:`lstm_numba.nn.zoneout`); ``recurrent_dropout`` drops
    h_{t-1} in each gate's recurrent GEMM, Keras's way (:mod:`lstm_numba.nn.recurrent_dropout`).
    ``seed`` fixes the initialisation and the dropout, zoneout and recurrent dropout masks.
    ``num_heads`` makes W_hh block-diagonal, xLSTM's heads (``weight_hh_l{k}`` is then
    (num_heads, n_blocks * H / num_heads, H / num_heads); see :mod:`lstm_numba.nn.recurrent_heads`).
    """

    default_gate = "lstm"

    def __init__(self, input_size, hidden_size, num_layers=1, bidirectional=False, batch_first=False,
                 bias=True, dropout=0.0, dtype="float32", seed=None, *, gate=None, activation="tanh",
                 recurrent_activation="sigmoid", activation_alpha=None, activation_beta=None,
                 recurrent_activation_alpha=None, recurrent_activation_beta=None, clip=None, proj_size=0, num_heads=1,
                 zoneout=0.0, zoneout_cell=0.0, recurrent_dropout=0.0):
        self.input_size = validation.positive_int("input_size", input_size)
        self.hidden_size = validation.positive_int("hidden_size", hidden_size)
        self.num_layers = validation.positive_int("num_layers", num_layers)
        self.bidirectional = bool(bidirectional)
        self.batch_first = bool(batch_first)
        self.bias = bool(bias)
        self.dropout = validation.probability("dropout", dropout)
        self.clip = validation.positive_threshold("clip", clip)
        self.dtype = validation.resolve_dtype(dtype)
        self.seed = validation.seed("seed", seed)
        self.training = True
        # (layer, direction) -> the last run's zoneout weights (T_k, B, S, H), recurrent dropout masks (B, n_blocks, H)
        self.last_masks = {"zoneout": {}, "recurrent_dropout": {}}

        self.gate_name = self.default_gate if gate is None else validation.plugin_name("gate", gate)
        self._gate_entry = registry.get_gate(self.gate_name)
        self.gate = self._gate_entry.obj
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or \
                not 0 <= proj_size < self.hidden_size:
            raise ValueError(f"proj_size: expected an integer in 0..hidden_size-1={self.hidden_size - 1}, "
                             f"got {proj_size!r}")
        self.proj_size = int(proj_size)
        if self.proj_size and not self.gate.projectable:
            raise ValueError(f"proj_size: gate {self.gate_name!r} is not projectable (its h is part of its state); "
                             "projectable gates keep h as an output only (lstm, peephole, coupled, slstm)")
        self.num_heads = self._check_heads(num_heads)
        self._zoneout = zoneout_module.state_probabilities(self.gate_name, self.state_names, zoneout, zoneout_cell,
                                                           self.proj_size, self.gate.scan is not None)
        self.zoneout, self.zoneout_cell = float(zoneout), float(zoneout_cell)
        self.recurrent_dropout = recurrent_dropout_module.probability(self.gate_name, self.gate, recurrent_dropout,
                                                                      self.proj_size)
        self._activations = tuple(
            self._resolve_activation(label, name, alpha, beta)
            for label, name, alpha, beta in (
                ("activation", activation, activation_alpha, activation_beta),
                ("recurrent_activation", recurrent_activation, recurrent_activation_alpha,
                 recurrent_activation_beta),
            )
        )
        param_bytes, init_bytes = self._parameter_bytes()
        memory.check_fits(f"{self._describe_sizes()}: the parameters ({memory.format_bytes(param_bytes)}) "
                          "with their initialisation", param_bytes + init_bytes)
        self._rng = np.random.default_rng(self.seed)
        self._slots = [
            _Slot(layer, direction, self.input_size if layer == 0 else self.output_size * self.num_directions)
            for layer in range(self.num_layers) for direction in range(self.num_directions)
        ]
        self._shapes = {slot: self._param_shapes(slot) for slot in self._slots}
        self._params = self._init_params()
        self._kernels = None
        self._last = None
        self._workspaces = {slot: layout.Workspace() for slot in self._slots}
        # step()'s own workspaces, so that streaming leaves a training tape alone, and its weight layouts
        self._stream_workspaces, self._stream_weights = {}, {}

    # ------------------------------------------------------------------ configuration
    def _check_heads(self, num_heads) -> int:
        """``num_heads``: block-diagonal recurrent weights (see :mod:`lstm_numba.nn.recurrent_heads`)."""
        recurrent_heads.head_width(self.hidden_size, num_heads)
        if num_heads > 1 and (not self.gate.recurrent or self.proj_size):
            raise ValueError(f"num_heads={num_heads}: needs a gate with recurrent weights and proj_size=0 "
                             f"(gate {self.gate_name!r}, proj_size={self.proj_size})")
        return int(num_heads)

    @staticmethod
    def _resolve_activation(label, name, alpha, beta):
        entry = registry.get_activation(validation.plugin_name(label, name))
        ab = tuple(
            getattr(entry.obj, which) if value is None else validation.finite_number(f"{label}_{which}", value)
            for which, value in (("alpha", alpha), ("beta", beta)))
        return label, entry, ab

    def _describe_sizes(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_layers={self.num_layers}"
                + (", bidirectional" if self.bidirectional else "") + f", {self.dtype.name}")

    def _layer_inputs(self):
        """(input size, how many layers have it) for the first and the other layers."""
        rest = self.num_layers - 1
        return [(self.input_size, 1)] + ([(self.hidden_size * self.num_directions, rest)] if rest else [])

    def _parameter_bytes(self) -> tuple[int, int]:
        """What the parameters take, in bytes (their data and each slot's Python objects),
        and what initialising the largest one takes on top (the float64 draw and its cast);
        computed without a loop over the layers, so that num_layers=10**7 is refused at once."""
        hidden, item = self.hidden_size, self.dtype.itemsize
        n_gates = self.gate.n_blocks * hidden
        per_slot = n_gates * hidden + (2 * n_gates if self.bias else 0) + sum(
            e.blocks for e in self.gate.extra_params) * hidden
        elements = sum(count * self.num_directions * (n_gates * inputs + per_slot)
                       for inputs, count in self._layer_inputs())
        biggest = max(n_gates * max(inputs, hidden) for inputs, _ in self._layer_inputs())
        slots = self.num_layers * self.num_directions
        return elements * item + slots * memory.SLOT_OVERHEAD, biggest * (8 + item)

    def _call_bytes(self, steps: int, batch: int, keep_tape: bool) -> int:
        """An upper bound of what a forward (and, keeping the tape, the backward that
        follows) allocates: tape, workspace, prepared weights and outputs, in bytes."""
        hidden, item, directions = self.hidden_size, self.dtype.itemsize, self.num_directions
        n_gates = self.gate.n_blocks * hidden
        n_state = len(self.state_names)
        rows = steps * batch
        total = 0
        for inputs, count in self._layer_inputs():
            depth = inputs + 1 + hidden
            slot = ((steps + 1) * batch * depth                              # xh
                    + rows * n_gates                                         # gx
                    + (steps + 1 if keep_tape else 2) * batch * n_state * hidden  # states
                    + (rows if keep_tape and not self.gate.additive else batch) * n_gates  # gh
                    + 2 * rows * hidden                                      # y (and its reordering)
                    + n_gates * (inputs + 2 * depth))                        # prepared weights
            if keep_tape:
                slot += (rows * n_gates * (1 if self.gate.additive else 2)    # dgx, dgh
                         + rows * (inputs + hidden)                           # dx, dy reordered
                         + n_gates * depth * (1 + memory.CORES)                # weight gradients, slabs
                         + n_gates * hidden)                                  # W_hh by parts
            total += count * (directions * slot + 2 * rows * directions * hidden)  # outputs, masks
        return total * item

    @property
    def rng(self) -> np.random.Generator:
        """The generator behind the initialisation and the dropout masks (seeded by ``seed``).

        Checkpoints save and restore its state so that a resumed run draws the same masks.
        """
        return self._rng

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features of h (per direction): ``proj_size`` when projected, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    @property
    def state_names(self) -> tuple:
        return self.gate.state_names

    @property
    def plugins(self) -> dict:
        """Names, distributions and versions of the plugins this layer runs (for checkpoints)."""
        entries = [("gate", self._gate_entry)] + [(label, entry) for label, entry, _ in self._activations]
        return {label: {"name": e.name, "distribution": e.distribution, "version": e.version}
                for label, e in entries}

    def config(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        (_, act, act_ab), (_, ract, ract_ab) = self._activations
        return dict(
            input_size=self.input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
            bidirectional=self.bidirectional, batch_first=self.batch_first, bias=self.bias,
            dropout=self.dropout, dtype=self.dtype.name, seed=self.seed, gate=self.gate_name,
            activation=act.name, recurrent_activation=ract.name,
            activation_alpha=act_ab[0], activation_beta=act_ab[1],
            recurrent_activation_alpha=ract_ab[0], recurrent_activation_beta=ract_ab[1],
            clip=None if math.isinf(self.clip) else self.clip, proj_size=self.proj_size,
            num_heads=self.num_heads, zoneout=self.zoneout, zoneout_cell=self.zoneout_cell,
            recurrent_dropout=self.recurrent_dropout,
        )

    @property
    def kernels(self):
        """The generated kernel module for this layer's gate, activations and dtype."""
        if self._kernels is None:
            (_, act, act_ab), (_, ract, ract_ab) = self._activations
            self._kernels = load_kernels(
                self._gate_entry, act, act_ab, ract, ract_ab,
                self.dtype.name,
            )
        return self._kernels

    def _compile_error(self, exc) -> registry.PluginError:
        """A Numba compile error (raised on a kernel's first call: a typing bug in a plugin's
        pointwise code) as a :class:`~lstm_numba.registry.PluginError` naming the plugin, its
        distribution, where and the first line of the compiler's complaint."""
        text = str(exc)
        roles = [("gate", self._gate_entry)] + [(label, entry) for label, entry, _ in self._activations]
        culprits = [(role, entry) for role, entry in roles if _source_file_of(entry) in text]
        if not culprits:  # the complaint names no plugin's file: blame the combination
            culprits = roles
        # A plugin may serve two roles (tanh as both activations): name it once
        named = {}
        for role, entry in culprits:
            named.setdefault((entry.kind, entry.qualified_name), (role, entry))
        who = "; ".join(f"{role} plugin {entry.name!r} from distribution {entry.distribution} "
                        f"{entry.version or '(no version)'}" for role, entry in named.values())
        first = next(iter(named.values()))[1]
        where = _complaint_location(text, _source_file_of(first)) if len(named) == 1 else ""
        error = registry.PluginError(
            f"{who}: its pointwise code failed to compile for {self.dtype.name}{where} (Numba: "
            f"{compiler_complaint(text)}); check it with `lstm-numba plugins check {first.name}`")
        error.compiler_message = text
        return error

    # ------------------------------------------------------------------ parameters
    def _param_shapes(self, slot: _Slot) -> dict:
        """PyTorch's weights in PyTorch's order (no ``weight_hh``/``bias_hh`` for a gate
        without recurrent weights; ``weight_hr`` when projected), then the gate's extra
        parameters."""
        n_gates = self.gate.n_blocks * self.hidden_size
        recurrent = self.gate.recurrent
        shapes = {f"weight_ih{slot.suffix}": (n_gates, slot.input_size)}
        if recurrent:
            shapes[f"weight_hh{slot.suffix}"] = (n_gates, self.output_size) if self.num_heads == 1 else \
                (self.num_heads, n_gates // self.num_heads, self.hidden_size // self.num_heads)
        if self.bias:
            shapes[f"bias_ih{slot.suffix}"] = (n_gates,)
            if recurrent:
                shapes[f"bias_hh{slot.suffix}"] = (n_gates,)
        if self.proj_size:
            shapes[f"weight_hr{slot.suffix}"] = (self.proj_size, self.hidden_size)
        for extra in self.gate.extra_params:
            shapes[f"{extra.name}{slot.suffix}"] = (extra.blocks * self.hidden_size,)
        return shapes

    def _init_params(self) -> dict:
        bound = 1.0 / math.sqrt(self.hidden_size)
        inits = {f"{e.name}": e.init for e in self.gate.extra_params}
        params = {}
        for slot in self._slots:
            for key, shape in self._shapes[slot].items():
                init = inits.get(key[: -len(slot.suffix)], "uniform")
                if init == "uniform":
                    value = self._rng.uniform(-bound, bound, size=shape)
                else:
                    value = np.full(shape, 0.0 if init == "zeros" else 1.0)
                # On a cache line, so that the kernels read the weights in place (see
                # layout.DirectionWeights); optimisers and load_state_dict update in place
                params[key] = layout.aligned_copy(value.astype(self.dtype))
        return params

    def _slot_params(self, slot: _Slot):
        for key, shape in self._shapes[slot].items():  # the kernels read them as they are
            check_live(self._params, key, shape, self.dtype)
        s = slot.suffix
        zeros = np.zeros(self.gate.n_blocks * self.hidden_size, dtype=self.dtype)
        b_ih = self._params[f"bias_ih{s}"] if self.bias else zeros
        b_hh = self._params[f"bias_hh{s}"] if self.bias and self.gate.recurrent else zeros
        extras = [self._params[f"{e.name}{s}"] for e in self.gate.extra_params]
        extra = np.concatenate(extras) if extras else np.zeros(0, dtype=self.dtype)
        w_hh = self._params.get(f"weight_hh{s}")
        if self.num_heads > 1:
            w_hh = recurrent_heads.dense(w_hh, self.gate.n_blocks)
        return (self._params[f"weight_ih{s}"], w_hh, b_ih, b_hh, extra,
                self._params.get(f"weight_hr{s}"))

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # ------------------------------------------------------------------ forward
    def __call__(self, x, state=None, lengths=None, *, need_grad=None, return_states=False):
        return self.forward(x, state, lengths, need_grad=need_grad, return_states=return_states)

    def _state_shapes(self, batch):
        """The shape of each state vector, h first: (L*D, B, H), h (L*D, B, P) when projected."""
        full = (self.num_layers * self.num_directions, batch, self.hidden_size)
        return [full[:2] + (self.output_size,)] + [full] * (len(self.state_names) - 1)

    def _as_time_major(self, name, array):
        return np.ascontiguousarray(array.transpose(1, 0, 2)) if self.batch_first else array

    def _initial_states(self, state, batch, label="state") -> list:
        """The state vectors as a list of arrays, h first (zeros when ``state`` is None)."""
        n_state = len(self.state_names)
        shapes = self._state_shapes(batch)
        if state is None:
            return [np.zeros(shape, dtype=self.dtype) for shape in shapes]
        names = ", ".join(n + "0" for n in self.state_names)
        wanted = ("h0" if n_state == 1 else f"a tuple of {n_state} arrays ({names})") + (
            f" of shape {shapes[0]}" if len(set(shapes)) == 1 else f" of shapes {', '.join(map(str, shapes))}")
        if n_state == 1 and not isinstance(state, (tuple, list)):
            parts = (state,)
        elif isinstance(state, (tuple, list)):
            parts = tuple(state)
        else:
            raise TypeError(f"{label}: expected {wanted} or None, got {type(state).__name__}")
        if len(parts) != n_state:
            raise ValueError(f"{label}: expected {n_state} arrays ({', '.join(self.state_names)}), got {len(parts)}")
        arrays = []
        for k, (name, part, shape) in enumerate(zip(self.state_names, parts, shapes)):
            width = "proj_size" if k == 0 and self.proj_size else "hidden"
            array = validation.float_array(f"{label} ({name}0)", part, "(L*D, B, H)", 3, self.dtype)
            validation.expect_shape(f"{label} ({name}0)", array, shape, f"(num_layers*num_directions, batch, {width})")
            arrays.append(array)
        return arrays

    def _pack_state(self, stacked):
        return stacked[0] if len(self.state_names) == 1 else tuple(stacked)

    def forward(self, x, state=None, lengths=None, *, need_grad=None, return_states=False):
        """Run the whole sequence.

        x        (T, B, I), or (B, T, I) with ``batch_first``
        state    initial state: ``(h0, c0)`` each (L*D, B, H) for two-state gates, ``h0``
                 for GRU; zeros when None
        lengths  (B,) valid steps per row, 1..T (PyTorch packed-sequence semantics)
        need_grad  keep what ``backward`` needs; defaults to the training mode
        return_states  also return the last layer's state after every step

        Returns ``y`` (T, B, D*H) (batch-first when asked; D*P when projected) and the final
        state, shaped like ``state``; with ``return_states``, a third value: every state vector of the
        gate (``(h, c)``, ``h`` for GRU, ``(h, c, n, m)`` for sLSTM) after every step of the
        last layer, each (T, B, D*H) ((B, T, D*H) batch-first), the directions side by side
        as in ``y``, zeros at padded steps; its ``h`` is ``y``. ``backward`` takes no
        gradient for them.
        """
        x = validation.float_array("x", x, "(B, T, input_size)" if self.batch_first else "(T, B, input_size)",
                                   3, self.dtype)
        x = self._as_time_major("x", x)
        steps, batch, features = x.shape
        if steps == 0 or batch == 0:
            raise ValueError(f"x: expected at least one time step and one batch row, got shape {x.shape}")
        if features != self.input_size:
            raise ValueError(f"x: expected last dimension input_size={self.input_size}, got {features}")
        lengths = (np.full(batch, steps, dtype=np.int64) if lengths is None
                   else validation.lengths_array(lengths, batch, steps))
        states0 = self._initial_states(state, batch)
        keep_tape = self.training if need_grad is None else bool(need_grad)
        memory.check_fits(lambda: f"x of shape {(batch, steps, features) if self.batch_first else x.shape} "
                                  f"(T={steps}, B={batch}) through {self._describe_sizes()}: the tape and workspace"
                                  + (" of forward and backward" if keep_tape else " of forward"),
                          self._call_bytes(steps, batch, keep_tape))
        try:
            layer_input, finals, tapes, masks, every = self._run_layers(
                x, states0, lengths, keep_tape, self._workspaces, dropout=self.training,
                keep_states=return_states)
        except numba_errors.NumbaError as exc:
            raise self._compile_error(exc) from None
        self._last = (tapes, masks, x.shape, lengths) if keep_tape else None
        y = self._as_time_major("y", layer_input)
        if return_states:
            return y, self._pack_state(finals), self._pack_every(every)
        return y, self._pack_state(finals)

    def _pack_every(self, every):
        """The last layer's states after every step (S arrays (T, B, D*H)), batch-first when asked, packed as a
        state."""
        return self._pack_state([self._as_time_major("states", a) for a in every])

    def _run_layers(self, x, states0, lengths, keep_tape, workspaces, dropout, start=0, weight_caches=None,
                    keep_states=False):
        """Every layer and direction over ``x`` (T, B, I) from ``states0`` (S, L*D, B, H).

        ``start``: the index of x's first step in its sequence (a stream's chunk).
        Returns the last layer's output, the final states (a list as ``states0``), the
        tapes, the dropout masks and, with ``keep_states``, the last layer's states after
        every step (a list of S arrays (T, B, D*H)).
        """
        finals = [np.empty_like(a) for a in states0]
        tapes, masks = {}, {}
        self.last_masks = {"zoneout": {}, "recurrent_dropout": {}}
        layer_input = x
        every = None
        # a scan gate trains as a parallel scan over time; inference and streaming run its steps
        run_direction = scan_forward_direction if self.gate.scan is not None and keep_tape else forward_direction
        for layer in range(self.num_layers):
            outputs, states = [], []
            last = layer == self.num_layers - 1
            for direction in range(self.num_directions):
                slot = self._slots[layer * self.num_directions + direction]
                w_ih, w_hh, b_ih, b_hh, extra, w_hr = self._slot_params(slot)
                index = layer * self.num_directions + direction
                zone = zoneout_module.mixing_weights(self._zoneout, layer_input.shape[0], layer_input.shape[1],
                                                     self.hidden_size, dropout, self._rng, self.dtype)
                if zone is not None:
                    self.last_masks["zoneout"][(layer, direction)] = zone
                rdrop = recurrent_dropout_module.masks(self.recurrent_dropout, layer_input.shape[1], self.gate.n_blocks,
                                                       self.hidden_size, dropout, self._rng, self.dtype)
                if rdrop is not None:
                    self.last_masks["recurrent_dropout"][(layer, direction)] = rdrop
                y_dir, final, tape, every_dir = run_direction(
                    self.kernels, workspaces[slot], layer_input, w_ih, w_hh, b_ih, b_hh, extra,
                    self.clip, lengths, bool(direction), [np.ascontiguousarray(a[index]) for a in states0], keep_tape,
                    start=start, weight_cache=None if weight_caches is None else weight_caches[slot],
                    keep_states=keep_states and last, w_hr=w_hr,
                    zoneout=zone, recurrent_dropout=None if rdrop is None else rdrop.transpose(1, 0, 2))
                for k, value in enumerate(final):
                    finals[k][index] = value
                tapes[slot] = tape
                outputs.append(y_dir)
                states.append(every_dir)
            if keep_states and last:
                every = [np.concatenate([d[k] for d in states], axis=2) if len(states) > 1 else states[0][k]
                         for k in range(len(states0))]
            layer_output = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=2)
            if dropout and self.dropout > 0 and layer < self.num_layers - 1:
                keep = 1.0 - self.dropout
                masks[layer] = (self._rng.random(layer_output.shape) < keep).astype(self.dtype) / self.dtype.type(keep)
                layer_output = layer_output * masks[layer]
            layer_input = layer_output
        return layer_input, finals, tapes, masks, every

    # ------------------------------------------------------------------ streaming
    def initial_state(self, batch, state=None, steps=0) -> StreamState:
        """The start of a stream of ``batch`` rows, for :meth:`step`.

        ``state``: the initial state as ``forward`` takes it (zeros when None); ``steps``:
        the index in the sequence of the stream's first step, when it continues a
        ``forward`` over the sequence's first ``steps`` steps from that forward's final
        state (the next chunk then gets the same bits as a forward over the whole sequence).
        """
        batch = validation.positive_int("batch", batch)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps: expected a non-negative integer, got {steps!r}")
        stacked = self._initial_states(state, batch)
        return StreamState(self.state_names, tuple(stacked), int(steps))

    def step(self, x, state=None, lengths=None, *, return_states=False):
        """Run a stream on by one step, or by a chunk of steps, through the compiled kernels.

        x        (B, I): one step; or a chunk (T_c, B, I), (B, T_c, I) with ``batch_first``
        state    a :class:`StreamState` (``initial_state`` or the previous ``step``); a plain
                 state, as ``forward`` takes it, starts a sequence from it; None: zeros
        lengths  (B,) valid steps of this chunk per row, 0..T_c: a row whose sequence has
                 ended keeps its state and outputs zeros (the chunk's part of ``forward``'s
                 ``lengths``)

        Returns ``y`` ((B, H) for one step, else shaped like the chunk with H features) and
        the next :class:`StreamState`; with ``return_states``, a third value as
        ``forward``'s (each state vector of the last layer after every step of the chunk,
        shaped like ``y``). However a sequence is cut into chunks, the outputs
        and the states are bitwise equal to ``forward`` over the whole sequence (in eval
        mode: ``step`` applies no dropout and keeps no tape, in either mode, and leaves the
        tape of the last ``forward`` for ``backward``). Unidirectional layers only.
        """
        if self.bidirectional:
            raise ValueError("step: a bidirectional layer cannot run as a stream (its reverse direction starts "
                             "from the end of the sequence); run forward over the whole sequence")
        layout_doc = "(B, input_size) or " + ("(B, T, input_size)" if self.batch_first else "(T, B, input_size)")
        ndim = np.ndim(x)
        x = validation.float_array("x", x, layout_doc, 2 if ndim == 2 else 3, self.dtype)
        one_step = x.ndim == 2
        x = x[None] if one_step else self._as_time_major("x", x)
        steps, batch, features = x.shape
        if steps == 0 or batch == 0:
            raise ValueError(f"x: expected at least one time step and one batch row, got shape {x.shape}")
        if features != self.input_size:
            raise ValueError(f"x: expected last dimension input_size={self.input_size}, got {features}")
        start = 0
        if isinstance(state, StreamState):
            if state.names != self.state_names:
                raise ValueError(f"state: a stream of a gate with states {state.names}, this layer's are "
                                 f"{self.state_names}")
            start, state = state.steps, state.state
        states0 = self._initial_states(state, batch)
        lengths = (np.full(batch, steps, dtype=np.int64) if lengths is None
                   else validation.lengths_array(lengths, batch, steps, minimum=0))
        if not self._stream_workspaces:
            self._stream_workspaces = {slot: layout.Workspace() for slot in self._slots}
            self._stream_weights = {slot: layout.WeightCache() for slot in self._slots}
        y, finals, _, _, every = self._run_layers(x, states0, lengths, False, self._stream_workspaces,
                                                  dropout=False, start=start, weight_caches=self._stream_weights,
                                                  keep_states=return_states)
        y = y[0] if one_step else self._as_time_major("y", y)
        state = StreamState(self.state_names, tuple(finals), start + steps)
        if return_states:
            return y, state, self._pack_state([a[0] for a in every]) if one_step else self._pack_every(every)
        return y, state

    # ------------------------------------------------------------------ backward
    def backward(self, dy, dstate=None) -> Gradients:
        """Gradients of the last forward, given dLoss/dy and optionally dLoss/d(final state)."""
        if self._last is None:
            raise RuntimeError("backward() needs a forward() first, run in training mode or with need_grad=True")
        tapes, masks, x_shape, lengths = self._last
        steps, batch, _ = x_shape
        y_shape = (steps, batch, self.num_directions * self.output_size)
        expected = (batch, steps, y_shape[2]) if self.batch_first else y_shape
        dy = validation.float_array("dy", dy, "shaped like y", 3, self.dtype)
        validation.expect_shape("dy", dy, expected, "(the shape of y)")
        dy = self._as_time_major("dy", dy)
        dstates = self._initial_states(dstate, batch, "dstate")  # zeros when None
        try:
            return self._backward(tapes, masks, dy, dstates)
        except numba_errors.NumbaError as exc:
            raise self._compile_error(exc) from None

    def _backward(self, tapes, masks, dy, dstates) -> Gradients:
        grads, dstates0 = {}, [np.empty_like(a) for a in dstates]
        d_output = dy
        for layer in reversed(range(self.num_layers)):
            if layer in masks:
                d_output = d_output * masks[layer]
            d_input = None
            for direction in range(self.num_directions):
                slot = self._slots[layer * self.num_directions + direction]
                index = layer * self.num_directions + direction
                out = slice(direction * self.output_size, (direction + 1) * self.output_size)
                run_backward = scan_backward_direction if isinstance(tapes[slot], ScanTape) else backward_direction
                g = run_backward(self.kernels, self._workspaces[slot], tapes[slot], self.clip,
                                       d_output[:, :, out], [np.ascontiguousarray(a[index]) for a in dstates])
                self._store_grads(grads, slot, g)
                for k, value in enumerate(g.state):
                    dstates0[k][index] = value
                d_input = g.x if d_input is None else d_input + g.x
            d_output = d_input
        return Gradients(
            params={key: grads[key] for key in self._params},
            x=self._as_time_major("dx", d_output),
            state=self._pack_state(dstates0),
        )

    def _store_grads(self, grads, slot, g) -> None:
        s = slot.suffix
        grads[f"weight_ih{s}"] = g.w_ih
        if self.gate.recurrent:
            grads[f"weight_hh{s}"] = g.w_hh if self.num_heads == 1 else recurrent_heads.blocks_of(g.w_hh, self.num_heads)
        if self.bias:
            grads[f"bias_ih{s}"] = g.b_ih
            if self.gate.recurrent:
                grads[f"bias_hh{s}"] = g.b_hh
        if self.proj_size:
            grads[f"weight_hr{s}"] = g.w_hr
        offset = 0
        for extra in self.gate.extra_params:
            size = extra.blocks * self.hidden_size
            grads[f"{extra.name}{s}"] = g.extra[offset:offset + size]
            offset += size

    def __repr__(self) -> str:
        cfg = self.config()
        shown = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k not in ("seed",))
        return f"{type(self).__name__}({shown})"


class GRU(LSTM):
    """A GRU with PyTorch's equations and weights: ``LSTM`` with ``gate="gru"``."""

    default_gate = "gru"
