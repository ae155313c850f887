"""The task table: every task by name, and building one from a resolved config.
"""

from __future__ import annotations

from lstm_numba.training.tasks.charlm import CharLMTask
from lstm_numba.training.tasks.classify import ClassifyTask
from lstm_numba.training.tasks.forecast import ForecastTask
from lstm_numba.training.tasks.translate import TranslateTask

TASKS = {cls.name: cls for cls in (ForecastTask, ClassifyTask, CharLMTask, TranslateTask)}


def make_task(cfg):
    """The task object for a resolved config."""
    return TASKS[cfg.task](cfg)
