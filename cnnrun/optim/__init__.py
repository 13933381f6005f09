"""Optimizers and learning-rate schedules: one registry each (``OPTIMIZERS``, ``SCHEDULES``)
of config classes that carry their rules."""

from .optimizers import OPTIMIZERS, Optimizer, OptimizerConfig, build_optimizer, no_decay_names
from .schedules import SCHEDULES, Schedule

__all__ = ["OPTIMIZERS", "Optimizer", "OptimizerConfig", "SCHEDULES", "Schedule",
           "build_optimizer", "no_decay_names"]
