"""Learning-rate schedules (``StepLR``, ``CosineAnnealingLR``), matching ``torch.optim.lr_scheduler``.
"""

from __future__ import annotations

import math

from lstm_numba.training.optim import Optimizer, ScalarState, lookup


class LRSchedule(ScalarState):
    """Base class: sets ``optimizer.lr`` from a closed form of the epoch count.

    Construction leaves the optimizer's lr as the base lr (epoch 0), as torch's does;
    each ``step()`` advances one epoch. ``load_state_dict`` leaves ``optimizer.lr`` alone
    (the optimizer's own state holds it), as torch's does.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
        self.last_epoch = 0

    def lr_at(self, epoch: int) -> float:
        """The learning rate after ``epoch`` calls of ``step()``."""
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rate."""
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def state_dict(self) -> dict:
        """JSON-able scalars: type, base lr, epoch and the schedule's settings."""
        return self._scalar_state()

    def load_state_dict(self, state: dict) -> None:
        """Restore the base lr, epoch and settings saved by ``state_dict``."""
        self._load_scalars(state)


def _positive_int(label: str, value) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")
    return int(value)


class StepLR(LRSchedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    name = "step"
    _scalars = ("base_lr", "last_epoch", "step_size", "gamma")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(optimizer)
        self.step_size = _positive_int("step_size", step_size)
        self.gamma = float(gamma)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRSchedule):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``.

    Past ``T_max`` the cosine continues (the lr rises again), as torch's does.
    """

    name = "cosine"
    _scalars = ("base_lr", "last_epoch", "T_max", "eta_min")

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        super().__init__(optimizer)
        self.T_max = _positive_int("T_max", T_max)
        self.eta_min = float(eta_min)

    def lr_at(self, epoch: int) -> float:
        return (self.eta_min + (self.base_lr - self.eta_min)
                * (1 + math.cos(math.pi * epoch / self.T_max)) / 2)


SCHEDULES = {cls.name: cls for cls in (StepLR, CosineAnnealingLR)}


def make_schedule(name: str, optimizer: Optimizer, **kw) -> LRSchedule:
    """Build a learning-rate schedule by name: ``"step"`` or ``"cosine"``."""
    return lookup("schedule", SCHEDULES, name)(optimizer, **kw)
