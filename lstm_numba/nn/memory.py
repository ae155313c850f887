"""Memory estimates: refuse, before allocating, what cannot fit in this machine's memory.

A layer of ``hidden_size=10**6`` asks for terabytes of weights, ``num_layers=10**7`` for
tens of gigabytes of small arrays and their Python objects, a long sequence for a tape
larger than the machine. NumPy would fail late (after minutes of building, or with an
empty ``MemoryError``) or, under overcommit, the kernel would kill the process. The
layers estimate what a call allocates (parameters, tape, workspace) and raise
:class:`TooLargeError`, naming the arguments and giving the estimate, when it exceeds the
machine's memory. The estimates are upper bounds of the arrays' bytes plus a measured
allowance for each small array's Python objects; they refuse only what cannot fit, never
what merely might not (other processes' use is not counted).
"""

from __future__ import annotations

import functools
import os

__all__ = ["TooLargeError", "machine_memory", "format_bytes", "check_fits"]

#: Bytes of Python objects per (layer, direction) slot of a recurrent layer beyond its
#: arrays' data: the array objects and aligned buffers of its parameters, the dict
#: entries, its workspace. Measured 2.3 KB with tracemalloc (LSTM(1, 1, num_layers=5000)).
SLOT_OVERHEAD = 2560

#: Bytes of Python objects per array beyond its data (object, buffer, alignment padding).
ARRAY_OVERHEAD = 256


class TooLargeError(ValueError, MemoryError):
    """A call would need more memory than this machine has; the message gives the estimate.

    A ValueError (a bad size is bad input) and a MemoryError (what NumPy would have raised).
    """


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            return int(text)
    return None


#: Cores: at most this many per-thread slabs of a reduction (an upper bound).
CORES = os.cpu_count() or 1


def machine_memory() -> int | None:
    """This machine's memory in bytes (the smaller of the physical memory and a cgroup's
    limit); None where it cannot be told (then nothing is refused). Read once per process:
    every forward consults it."""
    return _machine_memory()


@functools.cache
def _machine_memory() -> int | None:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = None
    limits = [n for n in (physical, _cgroup_limit()) if n and n > 0]
    return min(limits) if limits else None


def format_bytes(n: int | float) -> str:
    """``1536`` -> ``"1.5 KiB"``; astronomically large numbers stay readable."""
    n = float(n) if n < 2 ** 1000 else float("inf")
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            break
        n /= 1024
    if n == float("inf") or n >= 1024 ** 2:
        return f"{n:.3g} {unit}"
    return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"


def check_fits(what, nbytes: int) -> None:
    """Raise :class:`TooLargeError` when ``nbytes`` exceed the machine's memory.

    ``what`` names the arguments and the purpose, e.g. ``"hidden_size=1000000: the
    parameters"``; the message reads ``"{what} would need about 29.1 TiB, more than this
    machine's 23.5 GiB of memory"``. ``what`` may be a function that returns it (built only
    on refusal: a forward calls this every time).
    """
    limit = machine_memory()
    if limit is not None and nbytes > limit:
        what = what() if callable(what) else what
        raise TooLargeError(f"{what} would need about {format_bytes(nbytes)}, more than this machine's "
                            f"{format_bytes(limit)} of memory")
