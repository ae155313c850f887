"""The plugin contract: what a gate or an activation plugin provides.

Plugins import only this module (plus numpy and numba). The engine owns the GEMMs, the
time loop, the threads and the memory; a plugin supplies pointwise code that the engine
compiles into its kernels.

Every function a plugin gives is decorated with :data:`pointwise`.

Activation
    Two scalar functions::

        forward(x, alpha, beta) -> y
        derivative(x, y, alpha, beta) -> dy/dx

    ``alpha`` and ``beta`` are the ONNX-style parameters; the values given by the user
    (or the plugin's defaults) are frozen into the kernels as compile-time constants of
    the kernel's dtype.

Gate (one batch row, one time step; ``G = n_blocks * H``, ``S = len(state_names)``).
Every argument is a 1-D vector; take the per-block views with :func:`blocks` and index
them with the loop variable only (see :func:`blocks` for why)::

    forward(gx, gh, s_prev, p, clip, act, ract, s_next)
    backward(gx, gh, s_prev, p, clip, act, ract, ds_next, dgx, dgh, ds_prev, dp)

    gx       (G,)   input projection   x_t @ W_ih^T + b_ih
    gh       (G,)   recurrent projection h_{t-1} @ W_hh^T + b_hh
    s_prev   (S*H,) the state before the step, the S vectors concatenated; h first
    p        (P,)   the gate's extra parameters, concatenated (empty when none)
    clip     scalar cell clip: clamp pre-activations to [-clip, clip] (inf when off)
    act      bound activation (Keras ``activation``, ONNX g/h): ``y, dy_dx = act(x)``
    ract     bound recurrent activation (Keras ``recurrent_activation``, ONNX f)
    s_next   (S*H,) out: the state after the step; its h part is the output h_t
    ds_next  (S*H,) in: dLoss/ds_next (the engine already added dLoss/dh_t)
    dgx, dgh (G,)   out: dLoss/dgx and dLoss/dgh (an additive gate may skip dgh)
    ds_prev  (S*H,) out: the direct part of dLoss/ds_prev; the engine adds dgh @ W_hh
    dp       (P,)   in/out: add this row's dLoss/dp

Backward gets the same ``gx`` and ``gh`` that forward saw and recomputes what it needs,
so a gate keeps no tape of its own.

Scan form (:class:`ScanForm`, optional; one batch row, one time step) of a gate whose
step is the linear recurrence h_t = a_t * h_{t-1} + b_t with a_t > 0 and b_t > 0 computed
from ``gx`` alone (minGRU, minLSTM)::

    log_coefficients(gx, clip, log_a, log_b)
    log_coefficients_backward(gx, clip, d_log_a, d_log_b, dgx)

    gx       (G,)   input projection
    log_a    (H,)   out: log a_t
    log_b    (H,)   out: log b_t
    d_log_a, d_log_b (H,) in: dLoss/d(log a_t), dLoss/d(log b_t)
    dgx      (G,)   out: dLoss/dgx
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit, types
from numba.extending import overload

from lstm_numba.config import FASTMATH

#: Decorator for a plugin's pointwise functions. Both options matter:
#:
#: - ``inline="always"`` inlines the function into the kernels at the Numba IR level. A
#:   jitted function that takes another jitted function as an argument and is not
#:   inlined receives it as a runtime object address, and Numba then refuses to cache
#:   the kernel ("uses dynamic globals"), so every process would recompile.
#: - ``error_model="numpy"``: with Python's error model every float division carries a
#:   zero check that stops LLVM from vectorising the loop over H (measured 11x slower for
#:   the float32 tanh).
pointwise = njit(inline="always", error_model="numpy", fastmath=FASTMATH)

__all__ = [
    "pointwise",
    "Activation",
    "ExtraParam",
    "Gate",
    "ScanForm",
    "blocks",
    "clamp",
    "clip_grad",
    "fast_exp",
    "fast_log1p",
    "fast_sigmoid",
    "fast_tanh",
    "one",
    "zero",
]


@dataclass(frozen=True)
class Activation:
    """An activation plugin: jitted ``forward`` and ``derivative`` plus default parameters.

    ``description``: one line for ``lstm-numba plugins list`` (default: ``doc``'s first line)."""

    forward: Callable
    derivative: Callable
    alpha: float = 0.0
    beta: float = 0.0
    doc: str = ""
    description: str = ""


@dataclass(frozen=True)
class ExtraParam:
    """A gate parameter beyond the four PyTorch weights: a vector of ``blocks * H`` values.

    ``init`` is ``"uniform"`` (PyTorch's U(-1/sqrt(H), 1/sqrt(H))), ``"zeros"`` or
    ``"ones"``. Its state_dict key is ``{name}_l{k}`` (plus ``_reverse``).
    """

    name: str
    blocks: int
    init: str = "uniform"


@dataclass(frozen=True)
class ScanForm:
    """The log-space coefficients of a gate whose step is h_t = a_t h_{t-1} + b_t, with
    0 < a_t <= 1 and b_t > 0 (see the
    module docstring for the signatures): the engine then trains it as a parallel scan over
    time instead of a step loop."""

    log_coefficients: Callable
    log_coefficients_backward: Callable


@dataclass(frozen=True)
class Gate:
    """A gate (cell) plugin. See the module docstring for the step signatures.

    ``elementwise``: unit j of every output (``s_next``, ``dgx``, ``dgh``, ``ds_prev``,
    ``dp``) depends only on unit j of each block of the inputs, as in LSTM, GRU and
    peephole (layer norm, which mixes units, is not). The engine may then run the gate on
    slices of the hidden units in parallel, which is much faster for large layers.
    ``additive``: the gate reads ``gx`` and ``gh`` only through their sum ``gx + gh``
    (element by element), so that ``dgx == dgh``, as in LSTM and peephole (GRU, whose
    reset gate multiplies ``gh``, is not). The engine then passes the sum as ``gx`` and
    zeros as ``gh``, and keeps one pre-activation array and one gradient array instead
    of two each: less memory and less memory traffic. Its backward may leave ``dgh``
    unwritten: the engine passes scratch there and reads ``dgx`` alone.

    ``recurrent=False``: the gate has no recurrent weights (``W_hh``, ``b_hh``); h_{t-1}
    reaches it only through ``s_prev`` (IndRNN's per-unit recurrent scale, say, as an
    extra parameter). The layer then has no ``weight_hh``/``bias_hh`` parameters, the
    engine runs no recurrent GEMM, and ``gh`` is always zero; such a gate must be
    ``additive``.

    ``projectable``: the gate's h is an output only: it never reads the h part of
    ``s_prev`` (and writes zeros to the h part of ``ds_prev``), as in the LSTM family
    (not GRU, whose h is its state). A layer may then project h (``proj_size``, PyTorch's
    LSTM with projections): the engine keeps the gate's unprojected h in the state and
    projects it after each step.

    ``scan``: a :class:`ScanForm` for a gate with one state, h, no recurrent weights
    (``recurrent=False``) and no extra parameters whose ``forward`` is
    h_t = a_t h_{t-1} + b_t, a_t and b_t positive functions of ``gx`` alone (minGRU,
    minLSTM). Training (a forward that keeps the tape) then runs as a parallel scan over
    time in log space; inference and ``LSTM.step`` run ``forward`` step by step.

    ``lstm-numba plugins check`` verifies the elementwise, additive, projectable and scan claims.

    ``description``: one line for ``lstm-numba plugins list``, ideally naming the source of
    the equations; empty, the first line of ``doc`` stands in (:func:`summary`).
    """

    n_blocks: int
    state_names: tuple
    forward: Callable
    backward: Callable
    extra_params: tuple = field(default_factory=tuple)
    elementwise: bool = False
    additive: bool = False
    doc: str = ""
    recurrent: bool = True
    projectable: bool = False
    scan: ScanForm | None = None
    description: str = ""


def summary(plugin) -> str:
    """A plugin's one-line description: ``description``, else the first line of ``doc``."""
    text = plugin.description or next((line for line in plugin.doc.splitlines() if line.strip()), "")
    return " ".join(text.split())


# ---------------------------------------------------------------------------------------
# Pointwise helpers for plugin authors. In float32 they use a rational tanh (the form
# Eigen uses) that LLVM vectorises; Numba lowers float32 np.tanh/np.exp to scalar libm calls
# (docs/performance.md: 30x slower). In float64 they are the exact libm functions.
# ---------------------------------------------------------------------------------------

_TANH_CLAMP = 7.90531110763549805
_A1, _A3, _A5, _A7 = 4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08
_A9, _A11, _A13 = -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16
_B0, _B2, _B4, _B6 = 4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06


def fast_tanh(x):
    """tanh(x); vectorisable rational approximation in float32 (max error 4e-7)."""
    return math.tanh(x)


def fast_exp(x):
    """exp(x); float32 via the rational tanh, exp(x) = (1 + tanh(x/2)) / (1 - tanh(x/2)).

    In float32 it is accurate in absolute terms (about 1e-6) for x <= 0 only: relative
    error grows to 1e-4 at |x| = 8, it returns 0 below about -16 and inf above about 16.
    Use it for exp of non-positive arguments (ELU's x < 0, softplus's exp(-|x|)).
    """
    return math.exp(x)


def fast_log1p(x):
    """log(1 + x) for 0 <= x <= 1; float32 as the series 2 atanh(x / (2 + x)) (error about 1e-7).

    Use it for ``log1p(fast_exp(-abs(x)))`` (softplus, log-sigmoid): float32 ``np.log1p``
    is a scalar libm call that stops LLVM from vectorising the loop.
    """
    return math.log1p(x)


def fast_sigmoid(x):
    """1 / (1 + exp(-x)); float32 as 0.5 * tanh(0.5 x) + 0.5."""
    return 1.0 / (1.0 + math.exp(-x))


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def _rational_tanh32(x):
    f = np.float32
    xc = min(max(x, f(-_TANH_CLAMP)), f(_TANH_CLAMP))
    x2 = xc * xc
    p = x2 * f(_A13) + f(_A11)
    p = x2 * p + f(_A9)
    p = x2 * p + f(_A7)
    p = x2 * p + f(_A5)
    p = x2 * p + f(_A3)
    p = x2 * p + f(_A1)
    p = xc * p
    q = x2 * f(_B6) + f(_B4)
    q = x2 * q + f(_B2)
    q = x2 * q + f(_B0)
    return p / q


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def _sigmoid32(x):
    return np.float32(0.5) * _rational_tanh32(np.float32(0.5) * x) + np.float32(0.5)


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def _exp32(x):
    t = _rational_tanh32(np.float32(0.5) * x)
    return (np.float32(1.0) + t) / (np.float32(1.0) - t)


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def _series_log1p32(x):
    u = x / (np.float32(2.0) + x)  # in [0, 1/3] for x in [0, 1]: seven terms reach float32 precision
    v = u * u
    s = np.float32(0.0)
    for k in range(6, -1, -1):  # sum of v**k / (2k + 1), by Horner's rule (LLVM unrolls it)
        s = v * s + np.float32(1.0) / np.float32(2 * k + 1)
    return np.float32(2.0) * u * s


def _overload_by_precision(helper, float32_impl, exact_impl):
    """Compile ``helper(x)`` as ``float32_impl`` for float32 and ``exact_impl`` otherwise."""

    @overload(helper, inline="always")
    def implementation(x):
        if x == types.float32:
            return lambda x: float32_impl(x)
        return lambda x: exact_impl(x)


_overload_by_precision(fast_tanh, _rational_tanh32, np.tanh)
_overload_by_precision(fast_sigmoid, _sigmoid32, _sigmoid64)
_overload_by_precision(fast_exp, _exp32, np.exp)
_overload_by_precision(fast_log1p, _series_log1p32, np.log1p)


def blocks(vector, n):
    """Split ``vector`` (n * H,) into a tuple of ``n`` views of H values each.

    Index gate blocks through these views (``xi[j]``), not with offsets (``gx[H + j]``):
    Numba adds a negative-index check to ``gx[H + j]`` that stops LLVM from vectorising
    the loop over H (measured 13x slower).
    """
    return tuple(np.split(vector, n))


def _make_splitter(count: int):
    """``(vector, n) -> (vector[0:H], ..., vector[(count-1)*H:count*H])`` for a fixed count."""
    views = ", ".join(f"vector[{k} * size:{k + 1} * size]" for k in range(count))
    namespace = {}
    exec(f"def split_views(vector, n):\n    size = vector.size // {count}\n    return ({views},)\n", namespace)
    return namespace["split_views"]


@overload(blocks, inline="always")
def _blocks_impl(vector, n):
    if isinstance(n, types.IntegerLiteral):
        return _make_splitter(n.literal_value)
    return None


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def clamp(x, clip):
    """Clamp a pre-activation to [-clip, clip] (ONNX ``clip``)."""
    return min(max(x, -clip), clip)


def zero(x):
    """0 of the same float type as ``x`` (a literal 0 would promote float32 to float64)."""
    return 0.0


def one(x):
    """1 of the same float type as ``x``."""
    return 1.0


def _typed_constant(value):
    def typer(x):
        if isinstance(x, types.Float):
            constant = np.dtype(str(x)).type(value)
            return lambda x: constant
        return None

    return typer


overload(zero, inline="always")(_typed_constant(0))
overload(one, inline="always")(_typed_constant(1))


@njit(inline="always", error_model="numpy", fastmath=FASTMATH)
def clip_grad(x, clip):
    """1 where ``clamp`` passes the gradient of ``x`` through, else 0."""
    return one(x) if -clip <= x <= clip else zero(x)
