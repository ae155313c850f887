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

Imports: the registry, the engine's code generation and ``nn``; nothing imports it but the
CLI and ``lstm_numba.check_plugin``.
"""

from lstm_numba.plugin_check.check import check_plugin
from lstm_numba.plugin_check.results import CheckResult, PluginReport

__all__ = ["CheckResult", "PluginReport", "check_plugin"]
