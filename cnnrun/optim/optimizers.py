"""The optimizers: each type is one config class that carries its update rule and says how
many state arrays it keeps per parameter, registered in ``OPTIMIZERS``. The config schema's
union and ``summary``'s memory estimate are read from the same classes.

``Optimizer`` runs any of them on named parameters. Parameters, gradients and state are flat
dicts keyed by dotted names, updated in place. Each parameter gets its own learning-rate
factor and weight decay (per-layer multipliers, no-decay groups), so one update rule serves
all groups. State arrays are named ``<param>.<slot>`` so a checkpoint stores them.

The update rules (g is the gradient, λ the weight decay, μ the momentum):
  sgd, pytorch: g ← g + λw; v ← μv + g; w ← w − lr·(g + μv if nesterov else v)
  sgd, caffe:   v ← μv + lr·(g + λw); w ← w − v
  adam:         g ← g + λw; m ← β₁m + (1−β₁)g; s ← β₂s + (1−β₂)g²;
                w ← w − lr·m̂/(√ŝ + ε), with m̂ = m/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ)
  adamw:        w ← w·(1 − lr·λ), then adam with λ = 0 (decoupled decay)
  rmsprop:      g ← g + λw; s ← αs + (1−α)g²; w ← w − lr·g/(√s + ε) (with momentum:
                v ← μv + g/(√s + ε); w ← w − lr·v)
  sdlm:         w ← w − lr·g/(mu + h), h the diagonal of the Gauss–Newton matrix (LeCun 1998)
"""

from typing import Annotated, ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from ..engine.state import name_matches
from ..ops.backend import get_array_module
from ..registry import Declared, Registry

OPTIMIZERS = Registry("optimizer")


class OptimizerConfig(Declared):
    """What every optimizer declares: its fields, its state, its update."""

    slot_names: ClassVar[tuple[str, ...]] = ()

    def slots(self) -> int:
        """State arrays kept per parameter (``summary``'s optimizer memory)."""
        return len(self.slot_names)

    def update(self, opt: "Optimizer", name, w, g, lr, wd) -> None:
        raise NotImplementedError

    def needs_curvature(self, opt: "Optimizer", step: int) -> bool:
        return False


@OPTIMIZERS.register("sgd")
class SGD(OptimizerConfig):
    type: Literal["sgd"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)
    form: Literal["pytorch", "caffe"] = Field("pytorch", description="pytorch: v=μv+g, w-=lr·v; "
                                                                     "caffe: v=μv+lr·g, w-=v")

    def slots(self):
        return 1 if self.momentum or self.form == "caffe" else 0

    def update(self, opt, name, w, g, lr, wd):
        if self.form == "caffe":
            v = opt.slot(name, "momentum", w)
            v *= self.momentum
            v += lr * (g + wd * w if wd else g)
            w -= v
            return
        if wd:
            g = g + wd * w
        if self.momentum:
            first = f"{name}.momentum" not in opt.state
            v = opt.slot(name, "momentum", w)
            if first:  # PyTorch starts the buffer at g, not at zero
                v[...] = g
            else:
                v *= self.momentum
                v += g
            g = g + self.momentum * v if self.nesterov else v
        w -= lr * g


@OPTIMIZERS.register("adam")
class Adam(OptimizerConfig):
    type: Literal["adam"] = "adam"
    lr: PositiveFloat = 1e-3
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)],
                 Annotated[float, Field(ge=0.0, lt=1.0)]] = (0.9, 0.999)  # 1: no decay
    eps: PositiveFloat = 1e-8
    weight_decay: float = Field(0.0, ge=0.0)
    slot_names: ClassVar = ("exp_avg", "exp_avg_sq")
    decoupled: ClassVar[bool] = False

    def update(self, opt, name, w, g, lr, wd):
        xp = get_array_module(w)
        if wd and self.decoupled:
            w *= 1.0 - lr * wd
        elif wd:
            g = g + wd * w
        b1, b2 = self.betas
        m, s = opt.slot(name, "exp_avg", w), opt.slot(name, "exp_avg_sq", w)
        m *= b1
        m += (1 - b1) * g
        s *= b2
        s += (1 - b2) * g * g
        t = opt.steps
        denom = xp.sqrt(s) / (1 - b2 ** t) ** 0.5 + self.eps
        w -= (lr / (1 - b1 ** t)) * m / denom


@OPTIMIZERS.register("adamw")
class AdamW(Adam):
    type: Literal["adamw"] = "adamw"
    weight_decay: float = Field(0.01, ge=0.0)
    decoupled: ClassVar[bool] = True


@OPTIMIZERS.register("rmsprop")
class RMSprop(OptimizerConfig):
    type: Literal["rmsprop"] = "rmsprop"
    lr: PositiveFloat = 1e-2
    alpha: float = Field(0.99, gt=0.0, lt=1.0)
    eps: PositiveFloat = 1e-8
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)

    def slots(self):
        return 1 + (1 if self.momentum else 0)

    def update(self, opt, name, w, g, lr, wd):
        xp = get_array_module(w)
        if wd:
            g = g + wd * w
        s = opt.slot(name, "square_avg", w)
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        avg = xp.sqrt(s) + self.eps
        if self.momentum:
            v = opt.slot(name, "momentum", w)
            v *= self.momentum
            v += g / avg
            w -= lr * v
        else:
            w -= lr * g / avg


@OPTIMIZERS.register("sdlm")
class SDLM(OptimizerConfig):
    """LeCun's stochastic diagonal Levenberg–Marquardt: w ← w − lr·g/(mu + h), h the diagonal
    of the Gauss–Newton matrix, re-estimated every refresh_every steps from `probes` exact
    Gauss–Newton-vector products (h ≈ mean of v∘Gv over random ±1 vectors v)."""
    type: Literal["sdlm"] = "sdlm"
    lr: PositiveFloat = 0.01
    mu: PositiveFloat = Field(0.02, description="damping: bounds the step where h ≈ 0")
    probes: PositiveInt = 4
    refresh_every: PositiveInt = 250
    weight_decay: float = Field(0.0, ge=0.0)
    slot_names: ClassVar = ("curvature",)

    def needs_curvature(self, opt, step):
        return step % self.refresh_every == 0 or not opt.state

    def update(self, opt, name, w, g, lr, wd):
        if wd:
            g = g + wd * w
        w -= lr * g / (self.mu + opt.state[f"{name}.curvature"])


class Optimizer:
    """An optimizer config run over named parameters, with its state."""

    def __init__(self, cfg: OptimizerConfig, param_names, lr_mult=None, no_decay=()):
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
                self.cfg.update(self, name, params[name], g, lr * self.lr_mult[name],
                                self.decay[name])

    def slot(self, name, key, like):
        full = f"{name}.{key}"
        if full not in self.state:
            self.state[full] = get_array_module(like).zeros_like(like)
        return self.state[full]

    def needs_curvature(self, step: int) -> bool:
        return self.cfg.needs_curvature(self, step)

    def set_curvature(self, diag: dict) -> None:
        for name, h in diag.items():
            self.state[f"{name}.curvature"] = h


def _mult(name: str, table: dict) -> float:
    factor = 1.0
    for pattern, m in table.items():
        if name_matches(name, pattern):
            factor = m
    return factor


NORM_TYPES = {"batchnorm1d", "batchnorm2d"}


def no_decay_names(names, rules, owner_types: dict) -> list[str]:
    """The parameters ``train.no_decay`` exempts: 'bias', 'norm' (batch norm's weights) or
    name patterns."""
    def exempt(name, rule):
        if rule == "bias":
            return name.endswith(".bias")
        if rule == "norm":
            return owner_types.get(name) in NORM_TYPES
        return name_matches(name, rule)
    return [n for n in names for rule in rules if exempt(n, rule)]


def build_optimizer(cfg: OptimizerConfig, param_names, lr_mult=None, no_decay=()) -> Optimizer:
    return Optimizer(cfg, param_names, lr_mult, no_decay)
