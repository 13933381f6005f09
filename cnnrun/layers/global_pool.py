"""Pooling over whole maps or fixed bins: global average and maximum, adaptive average."""

import math
from typing import ClassVar, Literal

from ..ops.backend import get_array_module
from ..ops.shapes import ntuple
from ..registry import LAYERS
from .base import IntOrPair, Layer


class WholeMap(Layer):
    """One value per channel from all its positions: (C, H, W) or (C, L) → (C,)."""

    ranks: ClassVar = (2, 3)
    examples: ClassVar = (({}, (3, 4, 5)), ({}, (2, 6)))

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        return (in_shape[0],)

    def receptive_field(self, rf, in_shape):
        return rf.whole_grid()


@LAYERS.register("global_avgpool")
class GlobalAvgPool(WholeMap):
    """Mean over all spatial positions: (C, H, W) or (C, L) → (C,)."""

    type: Literal["global_avgpool"] = "global_avgpool"
    linear_in_x: ClassVar[bool] = True

    def to_onnx(self, g, x, p, in_shape):
        return g.op("Flatten", g.op("GlobalAveragePool", x), axis=1)  # (N, C, 1, …) -> (N, C)

    def forward(self, p, x, ctx):
        axes = tuple(range(1, x.ndim - 1))
        return x.mean(axis=axes), x.shape

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        shape = cache
        xp = get_array_module(gy)
        count = math.prod(shape[1:-1])
        expand = (slice(None),) + (None,) * (len(shape) - 2) + (slice(None),)
        return xp.broadcast_to(gy[expand] / count, shape), {}


@LAYERS.register("global_maxpool")
class GlobalMaxPool(WholeMap):
    """Maximum over all spatial positions: (C, H, W) or (C, L) → (C,). The gradient goes to
    each map's first maximum, as max-pooling's does."""

    type: Literal["global_maxpool"] = "global_maxpool"

    def to_onnx(self, g, x, p, in_shape):
        return g.op("Flatten", g.op("GlobalMaxPool", x), axis=1)  # (N, C, 1, …) -> (N, C)

    def forward(self, p, x, ctx):
        xp = get_array_module(x)
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (C, …, N) -> (C, S, N)
        at = flat.argmax(axis=1)[:, None, :]  # (C, 1, N): the first maximum
        return xp.take_along_axis(flat, at, axis=1)[:, 0, :], (x.shape, at)

    def _route(self, cache, g):
        """g (C, N) placed at each map's maximum, zeros elsewhere: (C, …, N)."""
        shape, at = cache
        xp = get_array_module(g)
        out = xp.zeros((shape[0], math.prod(shape[1:-1]), shape[-1]), dtype=g.dtype)
        xp.put_along_axis(out, at, g[:, None, :], axis=1)
        return out.reshape(shape)

    def backward(self, p, cache, gy, need_gx=True):
        return (self._route(cache, gy) if need_gx else None), {}

    def r_forward(self, p, v, rx, cache, ctx):  # the winners are fixed: R{y} reads R{x} there
        flat = rx.reshape(rx.shape[0], -1, rx.shape[-1])  # (C, …, N) -> (C, S, N)
        return get_array_module(rx).take_along_axis(flat, cache[1], axis=1)[:, 0, :], None

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        return self._route(cache, rgy), {}


def bin_matrix(n_in: int, n_out: int, xp, dtype):
    """(n_out, n_in) averaging matrix of PyTorch's adaptive bins [⌊i·n/m⌋, ⌈(i+1)·n/m⌉)."""
    i = xp.arange(n_out)
    start = (i * n_in) // n_out
    end = -((-(i + 1) * n_in) // n_out)  # ceiling division
    h = xp.arange(n_in)
    inside = (h[None, :] >= start[:, None]) & (h[None, :] < end[:, None])
    return inside.astype(dtype) / (end - start).astype(dtype)[:, None]


@LAYERS.register("adaptive_avgpool2d")
class AdaptiveAvgPool2d(Layer):
    """Average over output_size bins chosen to cover the input (torchvision's AlexNet/VGG).

    Bin i of n inputs → m outputs spans [⌊i·n/m⌋, ⌈(i+1)·n/m⌉). The 2-D mean is
    separable, so y = A_H · x · A_Wᵀ per map. When n is not a multiple of m the
    bins differ in size; the receptive field then reports the largest bin.
    """

    type: Literal["adaptive_avgpool2d"] = "adaptive_avgpool2d"
    linear_in_x: ClassVar[bool] = True
    output_size: IntOrPair
    ranks: ClassVar = (3,)
    examples: ClassVar = (({"output_size": 2}, (2, 4, 6)), ({"output_size": [3, 2]}, (2, 7, 5)),
                          ({"output_size": 3}, (1, 2, 4)))

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        return (in_shape[0], *ntuple(self.output_size, 2))

    def _bins(self, hw):
        """(largest bin, mean stride) per axis, for the receptive field."""
        out = ntuple(self.output_size, 2)
        k = tuple(max(-((-(i + 1) * n) // m) - (i * n) // m for i in range(m))
                  for n, m in zip(hw, out))
        s = tuple(max(1, n // m) for n, m in zip(hw, out))
        return k, s

    def receptive_field(self, rf, in_shape):
        k, s = self._bins(in_shape[1:])
        return rf.window(k, s, (0, 0), grid=self.output_shape(in_shape)[1:])

    def to_onnx(self, g, x, p, in_shape):
        (H, W), (OH, OW) = in_shape[1:], ntuple(self.output_size, 2)
        if (H, W) == (OH, OW):
            return x
        import numpy as np  # lazily: see backend.py
        Ah, Aw = bin_matrix(H, OH, np, np.float64), bin_matrix(W, OW, np, np.float64)
        t = g.op("MatMul", x, g.const(Aw.T, "bins_w"))  # (N, C, H, W) @ (W, OW)
        return g.op("MatMul", g.const(Ah, "bins_h"), t)  # (OH, H) @ (N, C, H, OW)

    def forward(self, p, x, ctx):
        xp = get_array_module(x)
        (H, W), (OH, OW) = x.shape[1:3], ntuple(self.output_size, 2)
        if (H, W) == (OH, OW):  # one cell per bin: the identity (VGG-16 at 224×224)
            return x, None
        Ah, Aw = bin_matrix(H, OH, xp, x.dtype), bin_matrix(W, OW, xp, x.dtype)
        t = xp.einsum("ih,chwn->ciwn", Ah, x)  # (C, OH, W, N)
        return xp.einsum("jw,ciwn->cijn", Aw, t), (Ah, Aw)

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        if cache is None:
            return gy, {}
        xp = get_array_module(gy)
        Ah, Aw = cache
        t = xp.einsum("jw,cijn->ciwn", Aw, gy)  # (C, OH, W, N)
        return xp.einsum("ih,ciwn->chwn", Ah, t), {}
