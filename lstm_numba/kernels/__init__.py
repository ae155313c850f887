"""Numba kernels: the time-loop template and the code generator that specialises it."""
