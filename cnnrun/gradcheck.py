"""Central finite differences against the hand-written backward passes (float64).

E(x, θ) = Σ y ∘ R for a fixed random R, so ∂E/∂y = R and every input and
parameter coordinate is compared with (E(v+ε) − E(v−ε))/2ε. ε ≈ 1e-6: the
notes' 1e-8 drowns in float64 round-off, and float32 cannot be checked at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layers import Context, Layer
from .layout import to_engine
from .model import flatten


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


def numeric_grad(energy, arr: np.ndarray, eps: float) -> np.ndarray:
    """∂E/∂arr by central differences, perturbing ``arr`` in place and restoring it."""
    g = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = energy()
        flat[i] = old - eps
        down = energy()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


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
    from .model import _trainable
    return _trainable(layer, tuple(in_shape))
