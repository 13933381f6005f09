"""Learning-rate schedules, as formulas of the epoch e (PyTorch's) or the iteration t (Caffe's).

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

from __future__ import annotations

import math


class Schedule:
    def __init__(self, cfg, base_lr: float, epochs: int, steps_per_epoch: int):
        self.cfg, self.base = cfg, base_lr
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.reductions, self.best, self.bad_epochs, self.cooldown_left = 0, None, 0, 0

    def lr(self, epoch: int, step: int) -> float:
        return self._warmup(step) * self._value(epoch, step)

    def _warmup(self, step: int) -> float:
        w = self.cfg.warmup
        if step >= w.steps:
            return 1.0
        return w.start_factor + (1.0 - w.start_factor) * step / w.steps

    def _value(self, e: int, t: int) -> float:
        c, lr0 = self.cfg, self.base
        kind = c.type
        if kind == "constant":
            return lr0
        if kind == "step":
            return lr0 * c.gamma ** (e // c.step_size)
        if kind == "multistep":
            return lr0 * c.gamma ** sum(1 for m in c.milestones if m <= e)
        if kind == "exponential":
            return lr0 * c.gamma ** e
        if kind == "cosine":
            T = c.t_max or self.epochs
            return c.eta_min + (lr0 - c.eta_min) * (1 + math.cos(math.pi * e / T)) / 2
        if kind == "inv":
            return lr0 * (1 + c.gamma * t) ** (-c.power)
        if kind == "poly":
            T = c.max_steps or self.epochs * self.steps_per_epoch
            return lr0 * max(0.0, 1 - t / T) ** c.power
        if kind == "plateau":
            return max(c.min_lr, lr0 * c.factor ** self.reductions)
        raise ValueError(kind)

    def observe(self, metric: float, higher_is_better: bool) -> None:
        """End of an epoch: a plateau schedule counts epochs without improvement."""
        if self.cfg.type != "plateau":
            return
        c = self.cfg
        value = -metric if higher_is_better else metric
        if self.best is None or value < self.best - c.threshold * abs(self.best):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        elif self.bad_epochs > c.patience:
            self.reductions += 1
            self.cooldown_left, self.bad_epochs = c.cooldown, 0

    def state_dict(self) -> dict:
        return {"reductions": self.reductions, "best": self.best, "bad_epochs": self.bad_epochs,
                "cooldown_left": self.cooldown_left}

    def load_state_dict(self, state: dict) -> None:
        for key in ("reductions", "best", "bad_epochs", "cooldown_left"):
            setattr(self, key, state[key])
