"""Optimizers and gradient clipping, matching ``torch.optim``.

Parameters are the engine's live ``dict[str, np.ndarray]`` (PyTorch names, float32 or float64);
gradients are a dict with the same keys, shapes and dtypes. ``step(grads)`` updates the
parameter arrays in place, so layers that own them see the new values.

The update formulas, and the order in which their operations run, follow torch's single-tensor
(``foreach=False``) implementations. Torch's vectorised CPU kernels fuse some multiply-adds
(``lerp``, ``add`` with ``alpha``), so agreement is to rounding (about 1e-15 relative in
float64), not bit for bit.

State dicts are flat: scalar entries are JSON-able, array entries are named
``"<buffer>/<param name>"`` (for example ``"exp_avg/weight_ih_l0"``), ready for an ``.npz``.
"""

from __future__ import annotations

import numpy as np


class ScalarState:
    """Saves and restores the scalar attributes named in ``_scalars`` plus a ``type`` tag."""

    name = ""
    _scalars: tuple[str, ...] = ()

    def _scalar_state(self) -> dict:
        state = {"type": self.name}
        for key in self._scalars:
            value = getattr(self, key)
            state[key] = list(value) if isinstance(value, tuple) else value
        return state

    def _load_scalars(self, state: dict) -> None:
        """Check the ``type`` tag and every scalar first, then assign them all."""
        if state.get("type") != self.name:
            raise ValueError(
                f"state dict is for {state.get('type')!r}, not {self.name!r}")
        missing = [key for key in self._scalars if key not in state]
        if missing:
            raise ValueError(f"{self.name} state dict lacks {missing}")
        # Cast to the attribute's own type (all are normalised at construction).
        values = {key: type(getattr(self, key))(state[key]) for key in self._scalars}
        for key, value in values.items():
            setattr(self, key, value)


def _check_params(params) -> dict:
    if not isinstance(params, dict) or not params:
        raise ValueError("params must be a non-empty dict of name -> numpy array")
    for key, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            raise ValueError(f"parameter {key!r} must be a float32 or float64 numpy array")
        if not p.flags.writeable:
            raise ValueError(f"parameter {key!r} is read-only; optimizers update in place")
    return params


def _check_grads(params: dict, grads) -> None:
    if not isinstance(grads, dict):
        hint = " (a layer's backward() returns Gradients: pass its .params)" if hasattr(grads, "params") else ""
        raise TypeError(f"grads: expected a dict of name -> numpy array, got {type(grads).__name__}{hint}")
    missing = sorted(set(params) - set(grads))
    unexpected = sorted(set(grads) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"grads do not match params: missing {missing}, unexpected {unexpected}")
    for key, p in params.items():
        g = grads[key]
        if not isinstance(g, np.ndarray) or g.shape != p.shape or g.dtype != p.dtype:
            got = (getattr(g, "shape", None), getattr(g, "dtype", type(g).__name__))
            raise ValueError(
                f"gradient {key!r} must have shape {p.shape} and dtype {p.dtype}, got {got}")


def _non_negative(label: str, value) -> float:
    value = float(value)
    if not value >= 0.0:
        raise ValueError(f"Invalid {label}: {value}")
    return value


class Optimizer(ScalarState):
    """Base class: the live parameter dict, ``lr``, and per-parameter buffers.

    ``self.buffers`` maps a buffer name (``"exp_avg"``, ...) to ``{param name: array}``.
    Subclasses implement ``_update(grads)`` and ``_buffer_names()``.
    """

    def __init__(self, params: dict, lr: float) -> None:
        self.params = _check_params(params)
        self.lr = _non_negative("learning rate", lr)
        self.buffers: dict[str, dict[str, np.ndarray]] = {}

    def step(self, grads: dict) -> None:
        """Apply one update to the parameter arrays, in place."""
        _check_grads(self.params, grads)
        self._update(grads)

    def _update(self, grads: dict) -> None:
        raise NotImplementedError

    def _buffer_names(self) -> tuple[set, set]:
        """(required, optional) buffer names for the current hyperparameters."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Scalars (JSON-able) and copies of the buffers under ``"<buffer>/<param>"``."""
        state = self._scalar_state()
        for buf, arrays in self.buffers.items():
            for key, array in arrays.items():
                state[f"{buf}/{key}"] = array.copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore hyperparameters, counters and buffers; on error nothing is changed."""
        old = self._scalar_state()
        self._load_scalars(state)
        try:
            self.buffers = self._parse_buffers(state)
        except ValueError:
            self._load_scalars(old)
            raise

    def _parse_buffers(self, state: dict) -> dict:
        grouped: dict[str, dict[str, np.ndarray]] = {}
        for key, value in state.items():
            if key == "type" or key in self._scalars:
                continue
            buf, sep, pname = key.partition("/")
            if not sep or not isinstance(value, np.ndarray):
                raise ValueError(f"{self.name} state dict has unexpected entry {key!r}")
            grouped.setdefault(buf, {})[pname] = value
        required, optional = self._buffer_names()
        if not required <= set(grouped) <= required | optional:
            raise ValueError(
                f"{self.name} state dict has buffers {sorted(grouped)}; "
                f"required {sorted(required)}, optional {sorted(optional)}")
        buffers = {}
        for buf, arrays in grouped.items():
            if set(arrays) != set(self.params):
                raise ValueError(f"buffer {buf!r} does not cover exactly the parameters: missing "
                                 f"{sorted(set(self.params) - set(arrays))}, unexpected "
                                 f"{sorted(set(arrays) - set(self.params))}")
            for key, array in arrays.items():
                if array.shape != self.params[key].shape:
                    raise ValueError(
                        f"buffer {buf}/{key} has shape {array.shape}, "
                        f"parameter has {self.params[key].shape}")
            buffers[buf] = {key: np.array(arrays[key], dtype=p.dtype)
                            for key, p in self.params.items()}
        return buffers


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov, L2 decay.

    Like torch, the momentum buffer is the first step's gradient (no dampening on step 1).
    """

    name = "sgd"
    _scalars = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(self, params: dict, lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        super().__init__(params, lr)
        self.momentum = _non_negative("momentum value", momentum)
        self.dampening = float(dampening)
        self.weight_decay = _non_negative("weight_decay value", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _buffer_names(self) -> tuple[set, set]:
        return set(), ({"momentum_buffer"} if self.momentum != 0 else set())

    def _update(self, grads: dict) -> None:
        bufs = self.buffers.get("momentum_buffer")
        first = bufs is None
        if self.momentum != 0 and first:
            bufs = self.buffers["momentum_buffer"] = {}
        for key, p in self.params.items():
            g = grads[key]
            if self.weight_decay != 0:
                g = g + self.weight_decay * p
            if self.momentum != 0:
                if first:
                    bufs[key] = g.copy()
                else:
                    buf = bufs[key]
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * bufs[key] if self.nesterov else bufs[key]
            p -= self.lr * g


def _lerp_(start: np.ndarray, end: np.ndarray, weight: float) -> None:
    """In-place ``start.lerp_(end, weight)`` with torch's two-branch formula."""
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)


class Adam(Optimizer):
    """Adam (Kingma & Ba), optionally AMSGrad; ``weight_decay`` is L2 added to the gradient.

    ``AdamW`` reuses this update with decoupled decay (``decoupled = True``).
    """

    name = "adam"
    decoupled = False
    _scalars = ("lr", "betas", "eps", "weight_decay", "amsgrad", "num_steps")

    def __init__(self, params: dict, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(params, lr)
        self.eps = _non_negative("epsilon value", eps)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair, got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        self.weight_decay = _non_negative("weight_decay value", weight_decay)
        self.amsgrad = bool(amsgrad)
        self.num_steps = 0
        self.buffers = {name: {key: np.zeros_like(p) for key, p in self.params.items()}
                        for name in self._buffer_names()[0]}

    def _buffer_names(self) -> tuple[set, set]:
        names = {"exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if self.amsgrad else set())
        return names, set()

    def _update(self, grads: dict) -> None:
        self.num_steps += 1
        beta1, beta2 = self.betas
        step = float(self.num_steps)
        step_size = self.lr / (1 - beta1 ** step)
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        for key, p in self.params.items():
            g = grads[key]
            if self.weight_decay != 0:
                if self.decoupled:
                    p *= 1 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p
            exp_avg = self.buffers["exp_avg"][key]
            exp_avg_sq = self.buffers["exp_avg_sq"][key]
            _lerp_(exp_avg, g, 1 - beta1)
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * g * g
            if self.amsgrad:
                exp_avg_sq = np.maximum(self.buffers["max_exp_avg_sq"][key], exp_avg_sq,
                                        out=self.buffers["max_exp_avg_sq"][key])
            denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt
            denom += self.eps
            p += -step_size * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr * wd`` first."""

    name = "adamw"
    decoupled = True

    def __init__(self, params: dict, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients in place so their joint L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the total norm is the norm of the per-array norms,
    the scale is ``min(max_norm / (total_norm + 1e-6), 1)``, and a non-finite norm is not an
    error (the gradients become non-finite). Returns the total norm before clipping.
    """
    if not isinstance(grads, dict):
        raise TypeError(f"grads: expected a dict of name -> numpy array, got {type(grads).__name__}")
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float, np.integer, np.floating)) \
            or not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive number, got {max_norm!r}")
    if not grads:
        return 0.0
    norms = [np.linalg.norm(np.asarray(g).ravel()) for g in grads.values()]
    total_norm = float(np.linalg.norm(np.asarray(norms, dtype=np.float64)))
    # min() keeps a NaN first argument, as torch.clamp(nan, max=1) does.
    clip_coef = min(float(max_norm) / (total_norm + 1e-6), 1.0)
    for g in grads.values():
        g *= clip_coef
    return total_norm


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW)}


def lookup(kind: str, table: dict, name: str):
    try:
        return table[name]
    except KeyError:
        raise ValueError(
            f"unknown {kind} {name!r}; valid names: {', '.join(sorted(table))}") from None


def make_optimizer(name: str, params: dict, lr: float, **kw) -> Optimizer:
    """Build an optimizer by name: ``"sgd"``, ``"adam"`` or ``"adamw"``."""
    return lookup("optimizer", OPTIMIZERS, name)(params, lr=lr, **kw)
