"""Optimizers and learning-rate schedules."""

from .optimizers import OPTIMIZERS, Optimizer, build_optimizer
from .schedules import Schedule

__all__ = ["OPTIMIZERS", "Optimizer", "Schedule", "build_optimizer"]
