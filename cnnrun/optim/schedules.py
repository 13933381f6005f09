"""Learning-rate schedules, as formulas of the epoch e (PyTorch's) or the iteration t (Caffe's).
Each type is one config class that carries its formula, registered in ``SCHEDULES``.

  constant     lr₀
  step         lr₀·γ^⌊e/step_size⌋
  multistep    lr₀·γ^(number of milestones ≤ e)
  exponential  lr₀·γ^e
  cosine       η_min + (lr₀ − η_min)·(1 + cos(π·e/T))/2   (past T it rises again, as PyTorch's)
  inv          lr₀·(1 + γ·t)^(−power)                (Caffe)
  poly         lr₀·(1 − t/max_steps)^power           (Caffe)
  plateau      lr₀·factor^k, k the reductions so far (validation metric stalled
               for `patience` epochs, then `cooldown` epochs of rest; not below min_lr)
Any schedule may start with a linear warm-up over `warmup.steps` iterations,
from start_factor·lr to lr (PyTorch's LinearLR).
"""

import math
from typing import Literal, Optional

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from ..registry import Declared, Registry

SCHEDULES = Registry("schedule")


class Warmup(Declared):
    steps: NonNegativeInt = 0
    start_factor: float = Field(0.0, ge=0.0, le=1.0)


@SCHEDULES.register("constant")
class Constant(Declared):
    type: Literal["constant"] = "constant"
    warmup: Warmup = Warmup.model_construct()

    def value(self, run: "Schedule", e: int, t: int) -> float:
        """The rate before warm-up at epoch e and iteration t."""
        return run.base

    def observe(self, run: "Schedule", metric: float, higher_is_better: bool) -> None:
        """End of an epoch: only the plateau schedule listens."""


@SCHEDULES.register("step")
class StepLR(Constant):
    type: Literal["step"] = "step"
    step_size: PositiveInt = 10
    gamma: PositiveFloat = 0.1

    def value(self, run, e, t):
        return run.base * self.gamma ** (e // self.step_size)


@SCHEDULES.register("multistep")
class MultiStep(Constant):
    type: Literal["multistep"] = "multistep"
    milestones: list[PositiveInt] = []
    gamma: PositiveFloat = 0.1

    def value(self, run, e, t):
        return run.base * self.gamma ** sum(1 for m in self.milestones if m <= e)


@SCHEDULES.register("exponential")
class Exponential(Constant):
    type: Literal["exponential"] = "exponential"
    gamma: PositiveFloat = 0.95

    def value(self, run, e, t):
        return run.base * self.gamma ** e


@SCHEDULES.register("cosine")
class Cosine(Constant):
    type: Literal["cosine"] = "cosine"
    t_max: Optional[PositiveInt] = Field(None, description="epochs; the run's epochs if omitted")
    eta_min: float = Field(0.0, ge=0.0)

    def value(self, run, e, t):
        T = self.t_max or run.epochs
        return self.eta_min + (run.base - self.eta_min) * (1 + math.cos(math.pi * e / T)) / 2


@SCHEDULES.register("inv")
class Inv(Constant):
    type: Literal["inv"] = "inv"
    gamma: float = Field(1e-4, ge=0.0)
    power: PositiveFloat = 0.75

    def value(self, run, e, t):
        return run.base * (1 + self.gamma * t) ** (-self.power)


@SCHEDULES.register("poly")
class Poly(Constant):
    type: Literal["poly"] = "poly"
    power: PositiveFloat = 1.0
    max_steps: Optional[PositiveInt] = Field(None, description="iterations; the run's if omitted")

    def value(self, run, e, t):
        T = self.max_steps or run.epochs * run.steps_per_epoch
        return run.base * max(0.0, 1 - t / T) ** self.power


@SCHEDULES.register("plateau")
class Plateau(Constant):
    type: Literal["plateau"] = "plateau"
    factor: float = Field(0.1, gt=0.0, lt=1.0)
    patience: NonNegativeInt = 10
    threshold: float = Field(1e-4, ge=0.0)
    cooldown: NonNegativeInt = 0
    min_lr: float = Field(0.0, ge=0.0)

    def value(self, run, e, t):
        return max(self.min_lr, run.base * self.factor ** run.reductions)

    def observe(self, run, metric, higher_is_better):
        value = -metric if higher_is_better else metric
        if run.best is None or value < run.best - self.threshold * abs(run.best):
            run.best, run.bad_epochs = value, 0
        else:
            run.bad_epochs += 1
        if run.cooldown_left:
            run.cooldown_left -= 1
            run.bad_epochs = 0
        elif run.bad_epochs > self.patience:
            run.reductions += 1
            run.cooldown_left, run.bad_epochs = self.cooldown, 0


class Schedule:
    """A schedule config run over a training: the rate at each step, and the plateau's state
    (kept in checkpoints)."""

    STATE = ("reductions", "best", "bad_epochs", "cooldown_left")

    def __init__(self, cfg: Constant, base_lr: float, epochs: int, steps_per_epoch: int):
        self.cfg, self.base = cfg, base_lr
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.reductions, self.best, self.bad_epochs, self.cooldown_left = 0, None, 0, 0

    def lr(self, epoch: int, step: int) -> float:
        return self._warmup(step) * self.cfg.value(self, epoch, step)

    def _warmup(self, step: int) -> float:
        w = self.cfg.warmup
        if step >= w.steps:
            return 1.0
        return w.start_factor + (1.0 - w.start_factor) * step / w.steps

    def observe(self, metric: float, higher_is_better: bool) -> None:
        self.cfg.observe(self, metric, higher_is_better)

    def state_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.STATE}

    def load_state_dict(self, state: dict) -> None:
        for key in self.STATE:
            setattr(self, key, state[key])
