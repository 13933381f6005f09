"""What a trained network computes inside: features of a named layer, nearest neighbours
in that feature space, the input a unit responds to most, and test-time averaging.

A layer is named by its dotted path (``conv2``, ``layer3.1``, ``features.block2``).
The path may descend through ``sequential`` containers; a layer inside a branching
block (residual, concat, dense) has no single input-to-output chain, so its block
is named instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..layers import Context
from ..layers.chain import chain_backward, chain_forward
from ..ops.layout import to_engine, to_external
from ..engine.state import flatten, node_at


@dataclass
class Step:
    name: str  # dotted path of the layer
    layer: object
    key: tuple  # where its parameters sit in the nested state
    in_shape: tuple


def chain_to(model, target: str) -> list[Step]:
    """The layers run, in order, from the input to ``target`` (inclusive)."""
    steps, names = [], []
    container, key, shape = model.root, (), model.input_shape
    parts = target.split(".")
    while True:
        children = container.child_inputs(shape)
        names = [n for n, _, _ in children]
        head = parts[0]
        if head not in names:
            where = ".".join(key) or "the model"
            raise UserError(f"--layer {target}: no layer '{head}' in {where}; its layers are "
                            f"{', '.join(names)}.")
        for name, child, child_shape in children:
            if name != head:
                steps.append(Step(".".join(key + (name,)), child, key + (name,), child_shape))
                continue
            if len(parts) == 1:
                steps.append(Step(".".join(key + (name,)), child, key + (name,), child_shape))
                return steps
            if child.type != "sequential":
                raise UserError(f"--layer {target}: '{'.'.join(key + (name,))}' is a "
                                f"{child.type} block; a layer inside it has no single path "
                                f"from the input, so name the block itself.")
            container, key, shape, parts = child, key + (name,), child_shape, parts[1:]
            break


def _steps(chain, state):
    return [(s.layer, node_at(state, s.key)) for s in chain]


def forward_to(steps, state, x, train=False):
    """Activations of the last step (engine layout) and the caches of every step."""
    return chain_forward(_steps(steps, state), x, Context(train=train))


def backward_from(steps, state, caches, gy):
    """∂(⟨gy, activation⟩)/∂input through the chain (the input gradient of every step)."""
    return chain_backward(_steps(steps, state), caches, gy, need_gx=True)[0]


def features(model, state, x: np.ndarray, layer: str, batch_size: int = 500) -> np.ndarray:
    """(N, F): the named layer's activations for images x (N, C, H, W), flattened per image."""
    steps = chain_to(model, layer)
    out = []
    for i in range(0, len(x), batch_size):
        a, _ = forward_to(steps, state, to_engine(x[i:i + batch_size]))
        out.append(to_external(a).reshape(len(x[i:i + batch_size]), -1))  # (n, …) -> (n, F)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=x.dtype)


def nearest(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k) and Euclidean distances of each query's k nearest rows of pool."""
    q = queries.astype(np.float64)
    p = pool.astype(np.float64)
    d2 = (q * q).sum(1)[:, None] - 2 * q @ p.T + (p * p).sum(1)[None, :]  # (Q, P)
    d2 = np.maximum(d2, 0.0)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return idx, np.sqrt(np.take_along_axis(d2, idx, axis=1))


def maximize(model, state, layer: str, unit: int, steps: int = 200, lr: float = 0.05,
             l2: float = 1e-3, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """The input (C, H, W) that most excites ``unit`` of ``layer``, by gradient ascent.

    Objective: the unit's mean activation (over its map, for a convolution)
    minus l2·‖x‖², from noise; each step moves x by lr along the
    normalised gradient (Erhan et al., 2009; Simonyan et al., 2014)."""
    chain = chain_to(model, layer)
    out_shape = chain[-1].layer.output_shape(chain[-1].in_shape)
    if not 0 <= unit < out_shape[0]:
        raise UserError(f"--unit {unit}: layer {layer} has {out_shape[0]} units (maps); "
                        f"choose 0 to {out_shape[0] - 1}.")
    dtype = next(iter(flatten(state).values()), np.zeros(0, np.float32)).dtype
    # noise of unit scale (inputs are normalised): near 0, ReLUs with negative biases are all
    # off and the gradient is exactly zero
    x = np.random.default_rng(seed).normal(0, 0.5, (*model.input_shape, 1)).astype(dtype)
    history = []
    for _ in range(steps):
        a, caches = forward_to(chain, state, x)
        size = int(np.prod(a.shape[1:-1])) or 1
        history.append(float(a[unit].mean()))
        ga = np.zeros_like(a)
        ga[unit] = 1.0 / size  # ∂ mean(a[unit]) / ∂a
        g = backward_from(chain, state, caches, ga) - 2 * l2 * x
        x = x + dtype.type(lr) * g / (np.sqrt((g * g).mean()) + 1e-12)
    return x[..., 0], history
