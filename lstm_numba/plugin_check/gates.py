"""The gate checks: finite differences at the step level, writes, the declared
properties (elementwise, additive), float32 purity and whole layers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from lstm_numba import registry
from lstm_numba.engine.codegen import load_kernels
from lstm_numba.plugin_check.results import (
    FD_RTOL,
    PluginReport,
    run_check,
    short_reason,
)

_GATE_STEP = 1e-6


_GATE_HIDDEN = 5


def _gate_kernels(entry, dtype: str):
    """The generated module for ``entry`` with tanh/sigmoid at their default parameters."""
    act, ract = registry.get_activation("tanh"), registry.get_activation("sigmoid")
    return load_kernels(entry, act, (act.obj.alpha, act.obj.beta), ract, (ract.obj.alpha, ract.obj.beta), dtype)


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
    from lstm_numba.engine.layout import part_major

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


def _check_gate_projectable(kernels, gate) -> tuple:
    """Change the h part of s_prev: s_next must not move, and backward must write zeros to
    the h part of ds_prev (the engine keeps the unprojected h there under a projection)."""
    if not gate.projectable:
        return True, "not declared: a layer with this gate takes no proj_size"
    prob = _step_problem(gate, _GATE_HIDDEN, seed=8, spread=0.7)
    hidden = _GATE_HIDDEN
    moved = _StepProblem(gx=prob.gx, gh=prob.gh, s_prev=prob.s_prev.copy(), p=prob.p, w=prob.w)
    moved.s_prev[:hidden] += np.random.default_rng(9).normal(size=hidden)
    problems = []
    if not np.array_equal(_step_forward(kernels, moved, math.inf), _step_forward(kernels, prob, math.inf)):
        problems.append("s_next depends on the h part of s_prev")
    for label, grads in (("ds_prev", _step_backward(kernels, prob, math.inf)),
                         ("ds_prev (h part of s_prev changed)", _step_backward(kernels, moved, math.inf))):
        if np.any(grads["s_prev"][:hidden] != 0):
            problems.append(f"{label} has a non-zero h part")
    if problems:
        return False, f"declared projectable, but {'; '.join(problems)} (set projectable=False)"
    return True, "s_next ignores the h part of s_prev and ds_prev's h part is zero"


def _scan_coefficients(kernels, gx, clip):
    log_a, log_b = (np.full((1, 1, _GATE_HIDDEN), np.nan) for _ in range(2))
    kernels.scan_coefficients(gx[None, None], clip, np.ones(1, np.int64), log_a, log_b)
    return log_a[0, 0], log_b[0, 0]


def _check_gate_scan(kernels, gate) -> tuple:
    """The scan form against the step: exp(log a) h_prev + exp(log b) must equal forward's
    s_next, log a must be <= 0 (a decay: the float32 scan's fast exp is accurate there only),
    and the coefficients' backward must match central differences of
    sum(w_a log a + w_b log b) over gx."""
    if gate.scan is None:
        return True, "no scan form: the layer trains with the step loop"
    prob = _step_problem(gate, _GATE_HIDDEN, seed=10, spread=1.5)
    zero_gh = np.zeros_like(prob.gh)
    s_next = _step_forward(kernels, prob, math.inf, dict(prob.inputs, gh=zero_gh))
    log_a, log_b = _scan_coefficients(kernels, prob.gx, math.inf)
    problems = []
    if not np.allclose(np.exp(log_a) * prob.s_prev + np.exp(log_b), s_next, rtol=1e-10, atol=1e-12):
        problems.append("exp(log_a) * h_prev + exp(log_b) differs from forward's s_next")
    if not np.all(log_a <= 0.0):
        problems.append(f"log_a must be <= 0 (0 < a_t <= 1), got up to {np.max(log_a):.3g}")
    rng = np.random.default_rng(11)
    w_a, w_b = rng.normal(size=_GATE_HIDDEN), rng.normal(size=_GATE_HIDDEN)
    dgx = np.full((1, 1, prob.gx.size), np.nan)
    kernels.scan_coefficients_backward(prob.gx[None, None], math.inf, np.ones(1, np.int64), w_a[None, None],
                                       w_b[None, None], dgx)
    numeric = np.empty_like(prob.gx)
    for k in range(prob.gx.size):
        values = []
        for sign in (1.0, -1.0):
            gx = prob.gx.copy()
            gx[k] += sign * 1e-6
            la, lb = _scan_coefficients(kernels, gx, math.inf)
            values.append(np.dot(w_a, la) + np.dot(w_b, lb))
        numeric[k] = (values[0] - values[1]) / 2e-6
    if not np.allclose(dgx[0, 0], numeric, rtol=1e-6, atol=1e-7):
        problems.append("log_coefficients_backward differs from finite differences")
    if problems:
        return False, f"scan form: {'; '.join(problems)}"
    return True, ("exp(log a) h_prev + exp(log b) equals the step, log a <= 0, and its backward matches "
                  "finite differences")


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
    from lstm_numba.nn.layers import LSTM

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


def check_gate(report: PluginReport, entry, name: str) -> None:
    gate = entry.obj
    try:
        kernels = _gate_kernels(entry, "float64")
    except Exception as exc:
        report.add("gradient", False, f"could not generate kernels: {short_reason(exc)}")
    else:
        run_check(report, "gradient", _check_gate_gradient, kernels, gate)
        run_check(report, "gradient with clip", _check_gate_gradient_clip, kernels, gate)
        run_check(report, "writes", _check_gate_writes, kernels, gate)
        run_check(report, "elementwise", _check_gate_elementwise, kernels, gate)
        run_check(report, "additive", _check_gate_additive, kernels, gate)
        run_check(report, "projectable", _check_gate_projectable, kernels, gate)
        run_check(report, "scan", _check_gate_scan, kernels, gate)
    run_check(report, "float32 step", _check_gate_float32, entry, gate)
    for dtype in ("float64", "float32"):
        run_check(report, f"layer {dtype}", _check_gate_layer, name, dtype)
