"""Check a gate or activation plugin: the same checks for the built-ins and third parties.

``check_plugin(name)`` (``ln.check_plugin``, ``lstm-numba plugins check NAME``) returns a
:class:`PluginReport`; it never raises for a broken plugin, it reports it.

A gate gets:

- ``load``: the entry point imports and validates (else the registry's reason);
- ``gradient``: a float64 central finite-difference check of its backward against its
  forward, at the single-step level (the generated module's ``step_forward`` and
  ``step_backward`` with tanh/sigmoid bound), for random ``gx``, ``gh``, ``s_prev`` and
  ``p`` of the declared sizes and a random projection loss ``sum(w * s_next)``;
- ``gradient with clip``: the same with a finite ``clip`` that is active on some elements;
- ``writes``: forward writes all of ``s_next``; backward writes all of ``dgx``, ``dgh`` and
  ``ds_prev`` and *adds* to ``dp`` (the engine calls it once per step on the same row of
  ``dp``); neither mutates ``gx``, ``gh``, ``s_prev`` or ``p``. An additive gate may leave
  all of ``dgh`` unwritten: it equals ``dgx``, and every check then takes ``dgx`` for it;
- ``elementwise``: for a gate declared ``elementwise``, the step on the hidden units split
  into two parts (the engine's part-major layout) gives what the step on the whole row
  gives, forward and backward; a gate that mixes units must not declare it;
- ``additive``: for a gate declared ``additive``, the step given ``(gx + gh, 0)`` gives
  what it gives for ``(gx, gh)``, and its backward gives ``dgx == dgh``;
- ``float32 step``: the float32 step, compiled afresh, has no float64 instruction in it (a
  Python float literal or an integer count promotes float32 arithmetic to float64, which
  slows every kernel and is easy to miss);
- ``layer float64`` and ``layer float32``: an ``ln.LSTM(gate=name)``, 2 layers,
  bidirectional, on a tiny batch with lengths: outputs, final states and all gradients have
  the right shapes and dtype and are finite. These compile the full kernels in both dtypes.

An activation gets ``load``, ``compile float64``, ``compile float32`` (its forward and
derivative return float32 for float32 input: no silent promotion to float64, which would
slow every kernel), ``derivative`` (float64 central differences at sample points, at the
plugin's default alpha/beta and at a second pair) and ``float32 accuracy`` (float32 agrees
with float64).

Finite differences and kinks: sample points are random, at least 1e-3 away from 0, and a
point (or, for gates, an input element) where the one-sided differences disagree, i.e.
where a kink lies within the step, is skipped and counted; this needs no knowledge of
where a plugin's kinks are (hard_sigmoid corners, clip bounds).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from lstm_numba import registry
from lstm_numba.kernels.codegen import PluginRef, load_kernels

__all__ = ["CheckResult", "PluginReport", "check_plugin"]

#: Relative tolerance of the float64 finite-difference checks.
FD_RTOL = 1e-6
_GATE_STEP = 1e-6
_ACT_STEP = 1e-6
_GATE_HIDDEN = 5
_MAX_DETAIL = 300


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, whether it passed and what was measured or went wrong."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class PluginReport:
    """What :func:`check_plugin` found. ``ok`` is true when every check passed."""

    kind: str
    name: str
    distribution: str = ""
    version: str = ""
    target: str = ""
    status: str = ""
    checks: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list:
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str = "") -> CheckResult:
        result = CheckResult(name, bool(ok), detail)
        self.checks.append(result)
        return result

    def __str__(self) -> str:
        origin = f"{self.distribution} {self.version}".strip() or "unknown distribution"
        head = f"{self.kind} {self.name!r} from {origin}"
        if self.target:
            head += f" ({self.target})"
        if self.status and self.status != "ok":
            head += f" [{self.status}]"
        verdict = "OK" if self.ok else f"FAILED ({len(self.failed)} of {len(self.checks)} checks)"
        width = max((len(c.name) for c in self.checks), default=0)
        lines = [f"{head}: {verdict}"]
        lines += [f"  [{'pass' if c.ok else 'FAIL'}] {c.name:<{width}}  {c.detail}".rstrip() for c in self.checks]
        return "\n".join(lines)


def _short(exc: BaseException) -> str:
    """A one-line description of an exception (Numba's typing errors are pages long)."""
    text = " ".join(str(exc).split())
    if len(text) > _MAX_DETAIL:
        text = text[:_MAX_DETAIL] + " ..."
    return f"{type(exc).__name__}: {text}"


# --------------------------------------------------------------------------- lookup


def _find(kind: str | None, name: str):
    """(kind, entry or None, error message) for ``name`` or ``"distribution:name"``."""
    kinds = [kind] if kind else ["gate", "activation"]
    distribution, _, short = name.rpartition(":")
    for k in kinds:
        entries = [e for e in registry.REGISTRY.entries(k, short)
                   if not distribution or e.distribution == distribution]
        if entries:
            try:
                return k, registry.REGISTRY.get(k, name), ""
            except registry.PluginError as exc:
                return k, entries[0], str(exc)
    try:  # the registry's own message lists what is installed
        registry.REGISTRY.get(kinds[0], name)
    except registry.PluginError as exc:
        message = str(exc)
    else:  # pragma: no cover - found after all
        message = f"{name!r} appeared while it was being looked up"
    if not kind:
        message = f"no gate or activation named {name!r} ({message})"
    return kind or "plugin", None, message


def check_plugin(name: str, kind: str | None = None) -> PluginReport:
    """Check the gate or activation plugin ``name`` (``"distribution:name"`` also works).

    ``kind`` is ``"gate"``, ``"activation"`` or None (look among the gates first, then the
    activations). Returns a :class:`PluginReport`; a missing or broken plugin gives a
    report with ``ok`` false and the registry's reason, not an exception.
    """
    if kind not in (None, "gate", "activation"):
        raise ValueError(f"kind: expected 'gate', 'activation' or None, got {kind!r}")
    found_kind, entry, error = _find(kind, name)
    report = PluginReport(kind=found_kind, name=name)
    if entry is not None:
        report.distribution, report.version = entry.distribution, entry.version
        report.target, report.status = entry.target, entry.status
    if error or entry is None:
        report.add("load", False, error)
        return report
    report.add("load", True, f"{entry.target} ({entry.status})")
    if found_kind == "gate":
        _check_gate(report, entry, name)
    else:
        _check_activation(report, entry)
    return report


def _run(report: PluginReport, label: str, check, *args) -> None:
    """Run one check; an exception (a Numba typing error, say) is that check's failure."""
    try:
        ok, detail = check(*args)
    except Exception as exc:  # a plugin can fail in any way: report, never raise
        ok, detail = False, _short(exc)
    report.add(label, ok, detail)


# --------------------------------------------------------------------------- gates


def _ref(entry) -> PluginRef:
    return PluginRef(entry.name, entry.target)


def _gate_kernels(entry, dtype: str):
    """The generated module for ``entry`` with tanh/sigmoid at their default parameters."""
    act, ract = registry.get_activation("tanh"), registry.get_activation("sigmoid")
    return load_kernels(_ref(entry), _ref(act), (act.obj.alpha, act.obj.beta),
                        _ref(ract), (ract.obj.alpha, ract.obj.beta), dtype)


@dataclass
class _StepProblem:
    """Random inputs of one gate step and a projection loss over the new state."""

    gx: np.ndarray      # (G,)
    gh: np.ndarray      # (G,)
    s_prev: np.ndarray  # (S*H,) the state vectors concatenated, h first
    p: np.ndarray       # (P,)
    w: np.ndarray       # (S*H,) the loss is sum(w * s_next)

    @property
    def inputs(self):
        return {"gx": self.gx, "gh": self.gh, "s_prev": self.s_prev, "p": self.p}


def _step_problem(gate, hidden: int, seed: int, spread: float) -> _StepProblem:
    rng = np.random.default_rng(seed)
    n_gates = gate.n_blocks * hidden
    p = []
    for extra in gate.extra_params:
        centre = 1.0 if extra.init == "ones" else 0.0
        p.append(centre + rng.uniform(-0.5, 0.5, extra.blocks * hidden))
    return _StepProblem(
        gx=rng.normal(0.0, spread, n_gates),
        gh=rng.normal(0.0, 0.5 * spread, n_gates),
        s_prev=rng.normal(0.0, 0.8, len(gate.state_names) * hidden),
        p=np.concatenate(p) if p else np.zeros(0),
        w=rng.normal(0.0, 1.0, len(gate.state_names) * hidden),
    )


def _step_forward(kernels, prob: _StepProblem, clip: float, inputs=None) -> np.ndarray:
    x = inputs or prob.inputs
    s_next = np.full_like(prob.s_prev, np.nan)
    kernels.step_forward(x["gx"], x["gh"], x["s_prev"], x["p"], clip, s_next)
    return s_next


def _step_backward(kernels, prob: _StepProblem, clip: float, dp0=None):
    """Analytic gradients of ``sum(w * s_next)``; outputs start as NaN to catch gaps."""
    n_gates = prob.gx.size
    grads = {"gx": np.full(n_gates, np.nan), "gh": np.full(n_gates, np.nan),
             "s_prev": np.full_like(prob.s_prev, np.nan),
             "p": np.zeros_like(prob.p) if dp0 is None else dp0.copy()}
    kernels.step_backward(prob.gx, prob.gh, prob.s_prev, prob.p, clip, prob.w.copy(),
                          grads["gx"], grads["gh"], grads["s_prev"], grads["p"])
    if kernels.ADDITIVE and np.isnan(grads["gh"]).all():  # left to the engine: dgh is dgx
        grads["gh"] = grads["gx"]  # the same array: the writes check tells by it
    return grads


def _label(key: str, index: tuple, state_names: tuple, size: int) -> str:
    """``dgx[3]``, or ``ds_prev[c][1]`` for element 1 of state vector c."""
    if key == "s_prev":
        hidden = size // len(state_names)
        return f"ds_prev[{state_names[index[0] // hidden]}][{index[0] % hidden}]"
    return f"d{key}[{', '.join(str(i) for i in index)}]"


def _gate_fd(kernels, prob: _StepProblem, clip: float, state_names: tuple, step: float = _GATE_STEP):
    """Compare analytic and central-difference gradients for every input element.

    Returns (ok, detail, analytic). An element whose one-sided differences disagree by
    more than the tolerance has a kink within the step (a clip bound, say) and is skipped.
    """
    analytic = _step_backward(kernels, prob, clip)
    loss = lambda inputs: float(np.sum(prob.w * _step_forward(kernels, prob, clip, inputs)))  # noqa: E731
    base_inputs = {k: v.copy() for k, v in prob.inputs.items()}
    l0 = loss(base_inputs)
    scale = max(max((np.abs(g).max(initial=0.0) for g in analytic.values() if np.isfinite(g).all()), default=0.0),
                1e-3)
    worst, worst_at, n_checked, n_skipped, bad = 0.0, "", 0, 0, []
    for key, value in base_inputs.items():
        for index in np.ndindex(value.shape):
            old = value[index]
            value[index] = old + step
            lp = loss(base_inputs)
            value[index] = old - step
            lm = loss(base_inputs)
            value[index] = old
            fd = (lp - lm) / (2 * step)
            an = analytic[key][index]
            tol = FD_RTOL * (abs(an) + 1e-2 * scale)
            if abs((lp - l0) - (l0 - lm)) / step > max(100 * tol, 1e-4 * scale):
                n_skipped += 1  # a kink lies within +-step: central differences say nothing here
                continue
            n_checked += 1
            err = abs(fd - an) if np.isfinite(an) else math.inf
            rel = err / (abs(an) + 1e-2 * scale)
            if rel > worst:
                worst, worst_at = rel, _label(key, index, state_names, value.size)
            if err > tol:
                bad.append(f"{_label(key, index, state_names, value.size)}: backward {an:.6g}, "
                           f"finite difference {fd:.6g}")
    detail = (f"{n_checked} inputs, max rel err {worst:.1e}" + (f" at {worst_at}" if worst_at else "")
              + (f", {n_skipped} skipped at kinks" if n_skipped else ""))
    if bad:
        shown = "; ".join(bad[:3]) + (f"; ... {len(bad) - 3} more" if len(bad) > 3 else "")
        return False, f"{len(bad)} of {n_checked} gradients wrong (rtol {FD_RTOL:g}): {shown}", analytic
    if n_checked == 0:
        return False, "no input could be checked (every element sits at a kink)", analytic
    return True, detail, analytic


def _check_gate_gradient(kernels, gate) -> tuple:
    prob = _step_problem(gate, _GATE_HIDDEN, seed=1, spread=0.7)
    ok, detail, _ = _gate_fd(kernels, prob, math.inf, gate.state_names)
    return ok, f"float64 step, tanh/sigmoid: {detail}"


def _check_gate_gradient_clip(kernels, gate) -> tuple:
    clip = 0.9
    prob = _step_problem(gate, _GATE_HIDDEN, seed=2, spread=1.5)
    ok, detail, clipped = _gate_fd(kernels, prob, clip, gate.state_names)
    free = _step_backward(kernels, prob, math.inf)
    changed = sum(int(np.sum(clipped[k] != free[k])) for k in free)
    total = sum(v.size for v in free.values())
    note = (f"clip={clip} changed {changed} of {total} gradients" if changed
            else f"note: clip={clip} changed no gradient (does the gate apply clip?)")
    return ok, f"{detail}; {note}"


def _check_gate_writes(kernels, gate) -> tuple:
    prob = _step_problem(gate, _GATE_HIDDEN, seed=3, spread=0.7)
    before = {k: v.copy() for k, v in prob.inputs.items()}
    problems = []
    s_next = _step_forward(kernels, prob, math.inf)
    if not np.isfinite(s_next).all():
        problems.append(f"forward left {int(np.sum(~np.isfinite(s_next)))} of {s_next.size} s_next values "
                        "unwritten or non-finite")
    fresh = _step_backward(kernels, prob, math.inf)
    for key, label in (("gx", "dgx"), ("gh", "dgh"), ("s_prev", "ds_prev")):
        missing = int(np.sum(~np.isfinite(fresh[key])))
        if missing:
            problems.append(f"backward left {missing} of {fresh[key].size} {label} values unwritten or non-finite")
    if prob.p.size:
        dp0 = np.random.default_rng(4).normal(size=prob.p.size)
        added = _step_backward(kernels, prob, math.inf, dp0)["p"] - dp0
        if not np.allclose(added, fresh["p"], rtol=1e-9, atol=1e-12):
            problems.append("backward must add to dp (dp += ...), not overwrite it: the engine sums every "
                            "step of a row into the same dp")
    for key, value in before.items():
        if not np.array_equal(value, prob.inputs[key]):
            problems.append(f"{key} was modified (it is input only)")
    if problems:
        return False, "; ".join(problems)
    written = "s_next, dgx, ds_prev fully written (dgh left as dgx)" if fresh["gh"] is fresh["gx"] else \
        "s_next, dgx, dgh, ds_prev fully written"
    return True, written + (", dp accumulated" if prob.p.size else "") + ", inputs untouched"


def _check_gate_elementwise(kernels, gate) -> tuple:
    """Split the hidden units in two parts, as the engine does, and compare with the whole row."""
    if not gate.elementwise:
        return True, "not declared: the engine always runs this gate on whole rows"
    from lstm_numba.engine import part_major

    hidden, parts = 2 * _GATE_HIDDEN, 2
    prob = _step_problem(gate, hidden, seed=6, spread=0.7)
    whole_next = _step_forward(kernels, prob, math.inf)
    whole = _step_backward(kernels, prob, math.inf)
    order = {key: part_major(value.size // hidden, hidden, parts) for key, value in prob.inputs.items()}
    order["w"] = order["s_prev"]
    split = _StepProblem(**{key: getattr(prob, key)[order[key]].copy() for key in ("gx", "gh", "s_prev", "p", "w")})
    split_next = np.empty_like(whole_next)
    split_grads = {key: np.zeros_like(value) for key, value in whole.items()}
    for part in range(parts):
        piece = _StepProblem(**{key: np.array_split(getattr(split, key), parts)[part]
                                for key in ("gx", "gh", "s_prev", "p", "w")})
        np.array_split(split_next, parts)[part][:] = _step_forward(kernels, piece, math.inf)
        for key, value in _step_backward(kernels, piece, math.inf).items():
            np.array_split(split_grads[key], parts)[part][:] = value
    mismatched = []
    if not np.allclose(split_next, whole_next[order["s_prev"]], rtol=1e-12, atol=1e-12):
        mismatched.append("s_next")
    for key, label in (("gx", "dgx"), ("gh", "dgh"), ("s_prev", "ds_prev"), ("p", "dp")):
        if not np.allclose(split_grads[key], whole[key][order[key]], rtol=1e-12, atol=1e-12):
            mismatched.append(label)
    if mismatched:
        return False, (f"declared elementwise, but {', '.join(mismatched)} change when the {hidden} hidden units "
                       f"are split into {parts} parts: unit j must depend only on unit j of each block "
                       "(set elementwise=False)")
    return True, f"s_next, dgx, dgh, ds_prev and dp agree with the hidden units split into {parts} parts"


def _check_gate_additive(kernels, gate) -> tuple:
    """Feed the gate (gx + gh, 0) as the engine does, and compare with (gx, gh)."""
    if not gate.additive:
        return True, "not declared: the engine passes gx and gh apart"
    prob = _step_problem(gate, _GATE_HIDDEN, seed=7, spread=0.7)
    folded = _StepProblem(gx=prob.gx + prob.gh, gh=np.zeros_like(prob.gh), s_prev=prob.s_prev, p=prob.p, w=prob.w)
    apart, summed = _step_backward(kernels, prob, math.inf), _step_backward(kernels, folded, math.inf)
    problems = []
    if not np.allclose(_step_forward(kernels, folded, math.inf), _step_forward(kernels, prob, math.inf),
                       rtol=1e-12, atol=1e-12):
        problems.append("s_next changes when gh is folded into gx")
    if not np.allclose(apart["gx"], apart["gh"], rtol=1e-12, atol=1e-12):
        problems.append("dgx differs from dgh")
    for key, label in (("gx", "dgx"), ("s_prev", "ds_prev"), ("p", "dp")):
        if not np.allclose(summed[key], apart[key], rtol=1e-12, atol=1e-12):
            problems.append(f"{label} changes when gh is folded into gx")
    if problems:
        return False, f"declared additive, but {'; '.join(problems)} (set additive=False)"
    return True, "s_next, dgx, ds_prev and dp depend on gx + gh only, and dgx == dgh"


_PROMOTIONS = {
    "float to double": re.compile(r"fpext float [^\n]* to double"),
    "int to double": re.compile(r"[su]itofp [^\n]* to double"),
    "double arithmetic": re.compile(r"= f(?:add|sub|mul|div|rem|neg)\b[^\n]*\bdouble\b"),
    "double math call": re.compile(r"call [^\n]*@llvm\.[a-z0-9]+\.f64\b"),
}


def _check_gate_float32(entry, gate) -> tuple:
    """Compile the float32 step afresh (cached code cannot be inspected) and look for float64."""
    from numba import njit

    from lstm_numba.config import FASTMATH

    kernels = _gate_kernels(entry, "float32")
    prob = _step_problem(gate, _GATE_HIDDEN, seed=6, spread=0.7)
    f32 = np.float32
    gx, gh, s_prev, p, w = (a.astype(f32) for a in (prob.gx, prob.gh, prob.s_prev, prob.p, prob.w))
    n_gates = gx.size
    found = {}
    for fn, args in (
        (kernels.step_forward, (gx, gh, s_prev, p, f32(0.9), np.empty_like(s_prev))),
        (kernels.step_backward, (gx, gh, s_prev, p, f32(0.9), w, np.empty(n_gates, f32), np.empty(n_gates, f32),
                                 np.empty_like(s_prev), np.zeros_like(p))),
    ):
        fresh = njit(error_model="numpy", fastmath=FASTMATH)(fn.py_func)
        fresh(*args)
        text = "".join(fresh.inspect_llvm().values())
        for label, pattern in _PROMOTIONS.items():
            count = len(pattern.findall(text))
            if count:
                found[f"{fn.__name__}: {label}"] = count
    if found:
        return False, ("float64 in the float32 step (" + ", ".join(f"{k} x{v}" for k, v in found.items())
                       + "): a Python float literal, an int count or a float64 helper promotes it; use "
                         "contract.zero/one, fast_tanh/fast_sigmoid/fast_exp, and convert constants to the "
                         "kernel's type")
    return True, "the float32 step compiles and computes in float32 only"


def _check_gate_layer(name: str, dtype: str) -> tuple:
    from lstm_numba.layers import LSTM

    steps, batch, features, hidden, layers = 4, 3, 3, 4, 2
    lengths = np.array([4, 2, 3])
    rnn = LSTM(features, hidden, num_layers=layers, bidirectional=True, dtype=dtype, seed=0, gate=name)
    n_state = len(rnn.state_names)
    rng = np.random.default_rng(5)
    shape = (layers * 2, batch, hidden)
    states = [rng.normal(0.0, 0.5, shape) for _ in range(n_state)]
    state = states[0] if n_state == 1 else tuple(states)
    x = rng.normal(size=(steps, batch, features))
    y, final = rnn(x, state, lengths=lengths)
    problems = []

    def expect(label, array, want_shape):
        if not isinstance(array, np.ndarray):
            problems.append(f"{label} is a {type(array).__name__}, not an array")
        elif array.shape != want_shape:
            problems.append(f"{label} has shape {array.shape}, expected {want_shape}")
        elif array.dtype != np.dtype(dtype):
            problems.append(f"{label} has dtype {array.dtype}, expected {dtype}")
        elif not np.isfinite(array).all():
            problems.append(f"{label} is not finite")

    expect("y", y, (steps, batch, 2 * hidden))
    finals = [final] if n_state == 1 else list(final)
    for state_name, array in zip(rnn.state_names, finals):
        expect(f"final {state_name}", array, shape)
    grads = rnn.backward(rng.normal(size=y.shape), tuple(rng.normal(size=shape) for _ in range(n_state))
                         if n_state > 1 else rng.normal(size=shape))
    for key, value in rnn.state_dict().items():
        if key not in grads.params:
            problems.append(f"no gradient for {key}")
        else:
            expect(f"d{key}", grads.params[key], value.shape)
    expect("dx", grads.x, x.shape)
    dstates = [grads.state] if n_state == 1 else list(grads.state)
    for state_name, array in zip(rnn.state_names, dstates):
        expect(f"d{state_name}0", array, shape)
    if problems:
        return False, "; ".join(problems[:5])
    n_params = sum(v.size for v in rnn.state_dict().values())
    return True, (f"2 layers, bidirectional, T={steps} B={batch} lengths={lengths.tolist()}: shapes, dtype "
                  f"and finiteness of y, state and {n_params} parameter gradients")


def _check_gate(report: PluginReport, entry, name: str) -> None:
    gate = entry.obj
    try:
        kernels = _gate_kernels(entry, "float64")
    except Exception as exc:
        report.add("gradient", False, f"could not generate kernels: {_short(exc)}")
    else:
        _run(report, "gradient", _check_gate_gradient, kernels, gate)
        _run(report, "gradient with clip", _check_gate_gradient_clip, kernels, gate)
        _run(report, "writes", _check_gate_writes, kernels, gate)
        _run(report, "elementwise", _check_gate_elementwise, kernels, gate)
        _run(report, "additive", _check_gate_additive, kernels, gate)
    _run(report, "float32 step", _check_gate_float32, entry, gate)
    for dtype in ("float64", "float32"):
        _run(report, f"layer {dtype}", _check_gate_layer, name, dtype)


# --------------------------------------------------------------------------- activations


def _return_type(dispatcher, arg_types):
    """The Numba return type compiled for ``arg_types``."""
    for sig in dispatcher.nopython_signatures:
        if tuple(sig.args) == tuple(arg_types):
            return sig.return_type
    return None


def _check_activation_compile(act, dtype: str) -> tuple:
    from numba import types

    cast = np.dtype(dtype).type
    a, b = cast(act.alpha), cast(act.beta)
    x = cast(0.37)
    y = act.forward(x, a, b)
    act.derivative(x, cast(y), a, b)
    nb = types.float32 if dtype == "float32" else types.float64
    got = {"forward": _return_type(act.forward, (nb,) * 3), "derivative": _return_type(act.derivative, (nb,) * 4)}
    wrong = {k: str(v) for k, v in got.items() if v != nb}
    if wrong:
        return False, ", ".join(f"{k} returns {v} for {dtype} input" for k, v in wrong.items()) + \
            " (a float literal or a float64 helper promotes it; use contract.zero/one and fast_* helpers)"
    return True, f"forward and derivative return {dtype}"


def _sample_points(seed: int = 7, n: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-6.0, 6.0, n), rng.normal(0.0, 0.5, n // 2)])
    return x[np.abs(x) > 1e-3]


def _parameter_sets(act):
    a, b = float(act.alpha), float(act.beta)
    return [(a, b), (0.5 * a + 0.3, 0.5 * b + 0.25)]


def _check_activation_derivative(act) -> tuple:
    x_all = _sample_points()
    h = _ACT_STEP
    worst, n_checked, n_skipped, bad = 0.0, 0, 0, []
    for alpha, beta in _parameter_sets(act):
        f = lambda v: float(act.forward(float(v), alpha, beta))  # noqa: E731
        for x in x_all:
            y0, yp, ym = f(x), f(x + h), f(x - h)
            d = float(act.derivative(float(x), y0, alpha, beta))
            fd = (yp - ym) / (2 * h)
            tol = FD_RTOL * max(1.0, abs(d))
            if abs((yp - y0) - (y0 - ym)) / h > 1e-4 * max(1.0, abs(d)):
                n_skipped += 1  # a kink within +-h
                continue
            n_checked += 1
            err = abs(fd - d) if math.isfinite(d) else math.inf
            worst = max(worst, err / max(1.0, abs(d)))
            if err > tol:
                bad.append(f"x={x:.4g} (alpha={alpha:g}, beta={beta:g}): derivative {d:.6g}, "
                           f"finite difference {fd:.6g}")
    if bad:
        return False, f"{len(bad)} of {n_checked} points wrong: " + "; ".join(bad[:3])
    if n_checked < len(x_all):
        return False, f"only {n_checked} of {2 * len(x_all)} points were away from kinks"
    return True, (f"float64, {n_checked} points in [-6, 6], 2 (alpha, beta) pairs, max rel err {worst:.1e}"
                  + (f", {n_skipped} skipped at kinks" if n_skipped else ""))


def _check_activation_float32(act) -> tuple:
    x64 = _sample_points(seed=8)
    a, b = float(act.alpha), float(act.beta)
    f32 = np.float32
    worst, bad = 0.0, []
    for x in x64:
        xs = f32(x)
        y64 = float(act.forward(float(xs), a, b))
        y32 = act.forward(xs, f32(a), f32(b))
        d64 = float(act.derivative(float(xs), y64, a, b))
        d32 = act.derivative(xs, f32(y32), f32(a), f32(b))
        for label, lo, hi in (("forward", y32, y64), ("derivative", d32, d64)):
            err = abs(float(lo) - hi) / max(1.0, abs(hi))
            worst = max(worst, err)
            if not err <= 1e-5:
                bad.append(f"{label}({float(xs):.4g}): float32 {float(lo):.7g}, float64 {hi:.7g}")
    if bad:
        return False, f"{len(bad)} values off by more than 1e-5: " + "; ".join(bad[:3])
    return True, f"float32 within {worst:.1e} (relative) of float64 at {len(x64)} points"


def _check_activation(report: PluginReport, entry) -> None:
    act = entry.obj
    _run(report, "compile float64", _check_activation_compile, act, "float64")
    _run(report, "compile float32", _check_activation_compile, act, "float32")
    _run(report, "derivative", _check_activation_derivative, act)
    _run(report, "float32 accuracy", _check_activation_float32, act)
