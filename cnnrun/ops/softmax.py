"""Softmax along one axis, written once: shifted by the maximum so no exponent overflows.

The engine's activations are (K, N), classes first (axis 0); host arrays of outputs are
(N, K) (axis 1). Every softmax in the package (the layer, the losses, evaluation,
prediction, combine_maps' mixing weights) is this one."""

from __future__ import annotations

from .backend import get_array_module


def softmax(z, axis: int = 0):
    xp = get_array_module(z)
    e = xp.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis: int = 0):
    xp = get_array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_backward(y, gy, axis: int = 0):
    """∂E/∂z from y = softmax(z) and ∂E/∂y: y ∘ (gy − Σ y ∘ gy) along the axis."""
    return y * (gy - (gy * y).sum(axis=axis, keepdims=True))
