"""Training: the configuration, the trainer, optimizers and schedules, data, checkpoints,
the metrics log and the tasks (one module each under :mod:`.tasks`).

Imports: ``nn``, the registry and ``config``; never ``profiling``. :mod:`.config` imports
no numba, so the CLI can share its choices and defaults at ``--help`` time.
"""
