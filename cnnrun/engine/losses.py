"""Losses, each returning the value and the gradient with respect to the network output.

Network outputs arrive in the engine's layout, (K, N): classes first, batch last.

- cross_entropy: fused log-softmax + negative log-likelihood, with the max
  shift, so no exponent overflows. With label smoothing ε the target is
  (1−ε)·one-hot + ε/K (PyTorch's definition).
- squared_error: the notes' E = ½·Σ_k (t_k − y_k)² per sample, the one-of-K
  target coded 0/1 or ±1 to match the output activation.

``reduction: mean`` (the default of both) divides the per-sample losses'
sum by the batch size N; ``sum`` does not. The squared error always sums over
the K outputs (the ½ is kept), so with N = 1 both reductions give the notes' E.
"""

from typing import Literal

from pydantic import ConfigDict, Field

from ..ops.backend import get_array_module
from ..ops.softmax import log_softmax, softmax
from ..registry import Declared, Registry

LOSSES = Registry("loss")


class Loss(Declared):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    reduction: Literal["mean", "sum"] = "mean"

    def value_and_grad(self, y, labels):
        raise NotImplementedError

    def hessian_vector(self, y, labels, ry):
        """R{∂E/∂y}: the loss Hessian with respect to the outputs, times R{y}."""
        raise NotImplementedError

    def _scale(self, n):
        return 1.0 / n if self.reduction == "mean" else 1.0


def one_hot(xp, labels, K, dtype, off=0.0, on=1.0):
    """(K, N) target matrix: ``on`` at each label, ``off`` elsewhere."""
    t = xp.full((K, labels.shape[0]), off, dtype=dtype)
    t[labels, xp.arange(labels.shape[0])] = on
    return t


@LOSSES.register("cross_entropy")
class CrossEntropy(Loss):
    type: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0.0, le=1.0)

    def value_and_grad(self, logits, labels):
        xp = get_array_module(logits)
        K, N = logits.shape
        logp = log_softmax(logits, axis=0)  # (K, N) log-probabilities
        eps = self.label_smoothing
        target = one_hot(xp, labels, K, logits.dtype, eps / K, 1.0 - eps + eps / K)
        s = self._scale(N)
        loss = -(target * logp).sum() * s
        grad = (xp.exp(logp) - target) * logits.dtype.type(s)
        return loss, grad

    def hessian_vector(self, logits, labels, rz):
        """(diag(p) − p pᵀ)·R{z} per sample, scaled like the loss."""
        p = softmax(logits, axis=0)
        return p * (rz - (p * rz).sum(axis=0, keepdims=True)) * self._scale(logits.shape[1])


@LOSSES.register("squared_error")
class SquaredError(Loss):
    type: Literal["squared_error"] = "squared_error"
    targets: Literal["zero_one", "plus_minus_one"] = "zero_one"

    def value_and_grad(self, y, labels):
        xp = get_array_module(y)
        K, N = y.shape
        off = -1.0 if self.targets == "plus_minus_one" else 0.0
        diff = y - one_hot(xp, labels, K, y.dtype, off, 1.0)
        s = self._scale(N)
        return 0.5 * (diff * diff).sum() * s, diff * y.dtype.type(s)

    def hessian_vector(self, y, labels, ry):
        return ry * self._scale(y.shape[1])

