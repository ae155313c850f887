"""The supported way to watch the engine's compiled calls: the profiler's phases.

Every kernel call of a direction pass goes through :func:`run` with the kernel's name
(``input_projection``, ``forward_rows``/``forward_parts``/``forward_proj_rows``,
``backward_rows``/``backward_parts``/``backward_proj_rows``,
``weight_gradients``/``weight_gradients_blocked``, ``input_gradient``). With no observer it
is a plain call; inside :func:`observe` each call's wall time is reported to the callback.
The observer is process-wide: observe one model at a time.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable

#: Names :func:`run` reports, in the order one training iteration calls them.
KERNEL_NAMES = ("input_projection", "forward_rows", "forward_parts", "forward_proj_rows", "backward_rows",
                "backward_parts", "backward_proj_rows", "weight_gradients", "weight_gradients_blocked",
                "input_gradient")

_observer: Callable[[str, float], None] | None = None


def run(name: str, kernel, *args):
    """``kernel(*args)``, its wall time reported as ``name`` to the observer, if any."""
    observer = _observer
    if observer is None:
        return kernel(*args)
    start = time.perf_counter()
    try:
        return kernel(*args)
    finally:
        observer(name, time.perf_counter() - start)


@contextlib.contextmanager
def observe(callback: Callable[[str, float], None]):
    """Report ``(kernel name, seconds)`` of every kernel call to ``callback`` while inside."""
    global _observer
    previous, _observer = _observer, callback
    try:
        yield
    finally:
        _observer = previous
