"""Central finite differences against the hand-written backward passes (float64).

E(x, θ) = Σ y ∘ R for a fixed random R, so ∂E/∂y = R and every input and
parameter coordinate is compared with (E(v+ε) − E(v−ε))/2ε. ε ≈ 1e-6: the
notes' 1e-8 drowns in float64 round-off, and float32 cannot be checked at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers import Context, Layer
from ..ops.layout import to_engine
from ..engine.state import flatten, trainable_shapes


@dataclass
class GradResult:
    name: str
    analytic: np.ndarray
    numeric: np.ndarray

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.analytic - self.numeric), initial=0.0))

    @property
    def max_rel_error(self) -> float:
        scale = max(float(np.max(np.abs(self.numeric), initial=0.0)), 1e-8)
        return self.max_abs_error / scale


def dodge_kinks(x: np.ndarray, low: float = 0.2) -> np.ndarray:
    """Move values at least ``low`` away from 0 (ReLU kinks), keeping their signs."""
    return np.sign(x) * (low + np.abs(x))


def central_difference(energy, flat: np.ndarray, i: int, eps: float) -> float:
    """(E(θ_i + ε) − E(θ_i − ε)) / 2ε, perturbing flat[i] in place and restoring it."""
    old = flat[i]
    flat[i] = old + eps
    up = energy()
    flat[i] = old - eps
    down = energy()
    flat[i] = old
    return (up - down) / (2 * eps)


def numeric_grad(energy, arr: np.ndarray, eps: float) -> np.ndarray:
    """∂E/∂arr by central differences at every coordinate."""
    flat = arr.reshape(-1)
    return np.array([central_difference(energy, flat, i, eps) for i in range(flat.size)]
                    ).reshape(arr.shape)


def check_layer(layer: Layer, in_shape, batch: int = 2, seed: int = 0, train: bool = True,
                eps: float = 1e-6, positive: bool = False) -> list[GradResult]:
    """Analytic vs numeric gradients of the input and every trainable parameter."""
    rng = np.random.default_rng(seed)
    state = layer.init_state(tuple(in_shape), rng)
    trainable = set(flatten(_shapes_of_trainable(layer, in_shape)))
    for name, arr in flatten(state).items():
        if name in trainable:  # random values: ones and zeros hide transposition bugs
            arr[...] = rng.normal(0.0, 0.7, arr.shape)
    x = rng.uniform(-1.0, 1.0, (batch, *in_shape))
    x = np.abs(x) + 0.5 if positive else dodge_kinks(x)
    x = to_engine(x)

    def run(x_):
        return layer.forward(state, x_, Context(train=train, rng=np.random.default_rng(seed + 1)))

    y, cache = run(x)
    R = rng.normal(size=y.shape)
    gx, grads = layer.backward(state, cache, R, need_gx=True)

    def energy():
        return float((run(x)[0] * R).sum())

    results = [GradResult("input", np.asarray(gx), numeric_grad(energy, x, eps))]
    flat_state, flat_grads = flatten(state), flatten(grads)
    for name in sorted(trainable):
        results.append(GradResult(name, np.asarray(flat_grads[name]),
                                  numeric_grad(energy, flat_state[name], eps)))
    return results


def _shapes_of_trainable(layer, in_shape):
    return trainable_shapes(layer, tuple(in_shape))


@dataclass
class CheckRow:
    layer: str
    parameter: str
    max_rel_error: float
    passed: bool
    checked: int  # coordinates (or 1 for the directional derivative)
    nonzero: int = 1  # of them, those whose gradient is not zero: what was really verified


def relative_errors(analytic, numeric, floor: float = 1e-7) -> np.ndarray:
    """|a − n| / max(|a|, |n|, floor): the floor keeps near-zero gradients from dividing by ~0."""
    a, n = np.asarray(analytic, dtype=np.float64), np.asarray(numeric, dtype=np.float64)
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)


def check_model(model, loss_fn, batch: int = 2, samples: int = 5, eps: float = 1e-6,
                seed: int = 0, tol: float = 1e-5) -> list[CheckRow]:
    """Sampled coordinates of every trainable parameter and of the input, plus one
    directional derivative along a random v over all parameters at once."""
    rng = np.random.default_rng(seed)
    state = model.init(seed=seed, dtype=np.float64)
    x = to_engine(dodge_kinks(rng.uniform(-1, 1, (batch, *model.input_shape))))
    labels = rng.integers(0, model.output_shape[0], batch)
    params = flatten(state)
    names = model.trainable_in(params)

    def energy():
        y, _ = model.forward(state, x, train=True, rng=np.random.default_rng(seed + 1))
        return float(loss_fn.value_and_grad(y, labels)[0])

    y, cache = model.forward(state, x, train=True, rng=np.random.default_rng(seed + 1))
    _, g = loss_fn.value_and_grad(y, labels)
    gx, grads = model.backward(state, cache, g, need_gx=True)
    grads = flatten(grads)
    rows = [_sampled("(input)", "x", x, gx, energy, rng, samples, eps, tol)]
    for name in names:
        layer, _, pname = name.rpartition(".")
        rows.append(_sampled(layer, pname, params[name], grads[name], energy, rng, samples, eps,
                             tol))
    rows.append(_directional(params, grads, names, energy, rng, eps, tol))
    return rows


ZERO = 1e-12  # a gradient this small checks nothing: both sides agree at 0 whatever the code


def _sampled(layer, pname, arr, grad, energy, rng, samples, eps, tol) -> CheckRow:
    """Coordinates where the gradient is not zero first (a zero one agrees with any code),
    then others if there are too few; the row says how many of each were checked."""
    flat, gflat = arr.reshape(-1), np.asarray(grad).reshape(-1)  # (…) -> (n,) views
    live = np.flatnonzero(np.abs(gflat) > ZERO)
    dead = np.setdiff1d(np.arange(flat.size), live, assume_unique=True)
    take = min(samples, flat.size)
    idx = rng.choice(live, size=min(take, live.size), replace=False)
    if idx.size < take:
        idx = np.concatenate([idx, rng.choice(dead, size=take - idx.size, replace=False)])
    numeric = [central_difference(energy, flat, i, eps) for i in idx]
    err = float(relative_errors(gflat[idx], numeric).max())
    nonzero = int(np.sum(np.abs(gflat[idx]) > ZERO))
    return CheckRow(layer, pname, err, err <= tol, len(idx), nonzero)


def _directional(params, grads, names, energy, rng, eps, tol) -> CheckRow:
    """(E(w + εv) − E(w − εv)) / 2ε against ∇E·v: two forward passes for all weights."""
    v = {n: rng.normal(size=params[n].shape) for n in names}
    norm = np.sqrt(sum((d * d).sum() for d in v.values()))
    v = {n: d / norm for n, d in v.items()}
    analytic = sum(float((np.asarray(grads[n]) * v[n]).sum()) for n in names)
    for n in names:
        params[n] += eps * v[n]
    up = energy()
    for n in names:
        params[n] -= 2 * eps * v[n]
    down = energy()
    for n in names:
        params[n] += eps * v[n]
    err = float(relative_errors([analytic], [(up - down) / (2 * eps)]).max())
    return CheckRow("(all)", "directional ∇E·v", err, err <= tol, 1)


def check_config(config, overrides, batch: int = 2, samples: int = 5, eps: float = 1e-6,
                 dtype: str = "float64") -> list:
    """``check_model`` on a config's network and loss, seeded by its train.seed."""
    from ..config import load_config
    from ..engine.model import Model
    from ..errors import UserError
    if not eps > 0:
        raise UserError(f"--eps {eps}: the finite-difference step must be positive (1e-6 by "
                        f"default).")
    if dtype != "float64":
        raise UserError(f"--dtype {dtype}: gradcheck runs in float64 only; float32 round-off "
                        f"(about 1e-7 relative) swamps any finite difference.")
    cfg = load_config(config, overrides)
    model = Model(cfg.model.layers, cfg.model.input_shape)
    return check_model(model, cfg.train.loss, batch=batch, samples=samples, eps=eps,
                       seed=cfg.train.seed)


def raise_if_failed(rows) -> None:
    """A run whose checks failed ends with exit 1, naming the worst."""
    from ..errors import RunFailed
    failed = [r for r in rows if not r.passed]
    if failed:
        raise RunFailed(f"{len(failed)} of {len(rows)} gradient checks failed (worst "
                        f"{max(r.max_rel_error for r in failed):.2e}, at "
                        f"{failed[0].layer}.{failed[0].parameter}).")
