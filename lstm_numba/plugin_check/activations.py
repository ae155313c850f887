"""The activation checks: compiles in both dtypes without promotion, derivative against
finite differences, float32 accuracy.
"""

from __future__ import annotations

import math

import numpy as np

from lstm_numba.plugin_check.results import FD_RTOL, PluginReport, run_check

_ACT_STEP = 1e-6


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


def check_activation(report: PluginReport, entry) -> None:
    act = entry.obj
    run_check(report, "compile float64", _check_activation_compile, act, "float64")
    run_check(report, "compile float32", _check_activation_compile, act, "float32")
    run_check(report, "derivative", _check_activation_derivative, act)
    run_check(report, "float32 accuracy", _check_activation_float32, act)
