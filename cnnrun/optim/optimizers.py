"""SGD (PyTorch's or Caffe's momentum), Adam, AdamW and RMSprop on named parameters.

Parameters, gradients and state are flat dicts keyed by dotted names, updated
in place. Each parameter gets its own learning-rate factor and weight decay
(per-layer multipliers, no-decay groups), so one update rule serves all
groups. State arrays are named ``<param>.<slot>`` so a checkpoint stores them.

The update rules (g is the gradient, λ the weight decay, μ the momentum):
  sgd, pytorch: g ← g + λw; v ← μv + g; w ← w − lr·(g + μv if nesterov else v)
  sgd, caffe:   v ← μv + lr·(g + λw); w ← w − v
  adam:         g ← g + λw; m ← β₁m + (1−β₁)g; s ← β₂s + (1−β₂)g²;
                w ← w − lr·m̂/(√ŝ + ε), with m̂ = m/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ)
  adamw:        w ← w·(1 − lr·λ), then adam with λ = 0 (decoupled decay)
  rmsprop:      g ← g + λw; s ← αs + (1−α)g²; w ← w − lr·g/(√s + ε) (with momentum:
                v ← μv + g/(√s + ε); w ← w − lr·v)
"""

from __future__ import annotations

import fnmatch

from ..backend import get_array_module


class Optimizer:
    def __init__(self, cfg, param_names, lr_mult=None, no_decay=()):
        self.cfg = cfg
        self.names = list(param_names)
        self.lr_mult = {n: _mult(n, lr_mult or {}) for n in self.names}
        self.decay = {n: 0.0 if n in set(no_decay) else cfg.weight_decay for n in self.names}
        self.state: dict = {}
        self.steps = 0

    def step(self, params: dict, grads: dict, lr: float) -> None:
        self.steps += 1
        for name in self.names:
            g = grads.get(name)
            if g is not None:
                self.update(name, params[name], g, lr * self.lr_mult[name], self.decay[name])

    def slot(self, name, key, like):
        full = f"{name}.{key}"
        if full not in self.state:
            self.state[full] = get_array_module(like).zeros_like(like)
        return self.state[full]

    def update(self, name, w, g, lr, wd):
        raise NotImplementedError


def _mult(name: str, table: dict) -> float:
    factor = 1.0
    for pattern, m in table.items():
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*"):
            factor = m
    return factor


class SGD(Optimizer):
    def update(self, name, w, g, lr, wd):
        c = self.cfg
        if c.form == "caffe":
            v = self.slot(name, "momentum", w)
            v *= c.momentum
            v += lr * (g + wd * w if wd else g)
            w -= v
            return
        if wd:
            g = g + wd * w
        if c.momentum:
            first = f"{name}.momentum" not in self.state
            v = self.slot(name, "momentum", w)
            if first:  # PyTorch starts the buffer at g, not at zero
                v[...] = g
            else:
                v *= c.momentum
                v += g
            g = g + c.momentum * v if c.nesterov else v
        w -= lr * g


class Adam(Optimizer):
    decoupled = False

    def update(self, name, w, g, lr, wd):
        c = self.cfg
        xp = get_array_module(w)
        if wd and self.decoupled:
            w *= 1.0 - lr * wd
        elif wd:
            g = g + wd * w
        b1, b2 = c.betas
        m, s = self.slot(name, "exp_avg", w), self.slot(name, "exp_avg_sq", w)
        m *= b1
        m += (1 - b1) * g
        s *= b2
        s += (1 - b2) * g * g
        t = self.steps
        denom = xp.sqrt(s) / (1 - b2 ** t) ** 0.5 + c.eps
        w -= (lr / (1 - b1 ** t)) * m / denom


class AdamW(Adam):
    decoupled = True


class RMSprop(Optimizer):
    def update(self, name, w, g, lr, wd):
        c = self.cfg
        xp = get_array_module(w)
        if wd:
            g = g + wd * w
        s = self.slot(name, "square_avg", w)
        s *= c.alpha
        s += (1 - c.alpha) * g * g
        avg = xp.sqrt(s) + c.eps
        if c.momentum:
            v = self.slot(name, "momentum", w)
            v *= c.momentum
            v += g / avg
            w -= lr * v
        else:
            w -= lr * g / avg


class SDLM(Optimizer):
    """Per-weight steps lr/(mu + h) from a diagonal Gauss–Newton estimate h (LeCun 1998)."""

    def needs_curvature(self, step: int) -> bool:
        return step % self.cfg.refresh_every == 0 or not self.state

    def set_curvature(self, diag: dict) -> None:
        for name, h in diag.items():
            self.state[f"{name}.curvature"] = h

    def update(self, name, w, g, lr, wd):
        if wd:
            g = g + wd * w
        w -= lr * g / (self.cfg.mu + self.state[f"{name}.curvature"])


def estimate_gn_diagonal(model, state, x, labels, loss_fn, probes: int, rng, dropout_rng_of):
    """diag(G) ≈ mean over Rademacher v of v ∘ (G v), clipped at 0 (G is PSD; noise is not)."""
    from ..model import flatten
    xp = get_array_module(x)
    flat = flatten(state)
    names = sorted(model.trainable_names())
    total = {n: xp.zeros_like(flat[n]) for n in names}
    for k in range(probes):
        v = {n: xp.asarray(rng.choice([-1.0, 1.0], size=flat[n].shape), dtype=flat[n].dtype)
             for n in names}
        gv = model.hvp(state, x, labels, loss_fn, v, gauss_newton=True, rng=dropout_rng_of())
        for n in names:
            total[n] += v[n] * gv[n]
    return {n: xp.maximum(total[n] / probes, 0) for n in names}


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "sdlm": SDLM}


def build_optimizer(cfg, param_names, lr_mult=None, no_decay=()) -> Optimizer:
    return OPTIMIZERS[cfg.type](cfg, param_names, lr_mult, no_decay)
