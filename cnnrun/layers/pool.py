"""Window pooling layers: max, average and p-norm (global and adaptive pooling: global_pool.py)."""

import math
from typing import ClassVar, Literal, Optional, Union

from pydantic import NonNegativeInt, PositiveFloat, model_validator

from ..ops.backend import get_array_module
from ..ops import pool as ops
from ..ops.spatial import crop_spatial, pad_spatial
from ..ops.shapes import conv_out_size, ntuple, window_padding
from ..registry import LAYERS
from .base import IntOrPair, Layer, ShapeError



class Pool2d(Layer):
    """Shared geometry of the sliding-window pools (stride defaults to the kernel)."""

    kernel_size: IntOrPair
    stride: Optional[IntOrPair] = None
    padding: Union[NonNegativeInt, tuple[NonNegativeInt, NonNegativeInt]] = 0
    ceil_mode: bool = False
    ranks: ClassVar = (3,)

    @model_validator(mode="after")
    def _padding_at_most_half_kernel(self):
        if any(p > k // 2 for p, k in zip(ntuple(self.padding, 2), ntuple(self.kernel_size, 2))):
            raise ValueError(f"padding {self.padding} must be at most half the kernel "
                             f"{self.kernel_size} (as in PyTorch)")
        return self

    def geometry(self):
        k = ntuple(self.kernel_size, 2)
        s = ntuple(self.stride, 2) if self.stride is not None else k
        d = ntuple(getattr(self, "dilation", 1), 2)
        return k, s, d

    def out_hw(self, hw):
        k, s, d = self.geometry()
        p = ntuple(self.padding, 2)
        return tuple(conv_out_size(n, ki, si, (pi, pi), di, self.ceil_mode)
                     for n, ki, si, pi, di in zip(hw, k, s, p, d))

    def pads(self, hw):
        """(before, after) per axis, the after side including any ceil-mode overhang."""
        k, s, d = self.geometry()
        return tuple(window_padding(n, ki, si, (pi, pi), di, o) for n, ki, si, pi, di, o in
                     zip(hw, k, s, ntuple(self.padding, 2), d, self.out_hw(hw)))

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        out = self.out_hw(in_shape[1:])
        if min(out) < 1:
            raise ShapeError(f"{self.label()}: window {self.kernel_size} does not fit input "
                             f"shape {tuple(in_shape)} (padding {self.padding})")
        return (in_shape[0], *out)

    def receptive_field(self, rf, in_shape):
        k, s, d = self.geometry()
        return rf.window(k, s, ntuple(self.padding, 2), d, grid=self.output_shape(in_shape)[1:])

    def _onnx_window(self, in_shape, pads=None):
        """Kernel, stride and explicit (ceil-mode overhang included) pads as ONNX attributes."""
        k, s, d = self.geometry()
        (pt, pb), (pl, pr) = pads or self.pads(in_shape[1:])
        return {"kernel_shape": list(k), "strides": list(s), "pads": [pt, pl, pb, pr]}

    def _padded(self, x, value=0.0):
        pads = self.pads(x.shape[1:3])
        return pad_spatial(x, pads, value), pads


@LAYERS.register("maxpool2d")
class MaxPool2d(Pool2d):
    """Max over each window: y = max_{window} x. Input/output (C, H, W) → (C, OH, OW).

    Padding is −∞; ceil_mode gives Caffe-style sizes. Backward sends each
    window's gradient to its first maximum only.
    """

    type: Literal["maxpool2d"] = "maxpool2d"
    dilation: IntOrPair = 1
    examples: ClassVar = (
        ({"kernel_size": 2}, (2, 6, 6)),
        ({"kernel_size": 3, "stride": 2, "padding": 1}, (2, 7, 7)),
        ({"kernel_size": 3, "stride": 2, "ceil_mode": True}, (1, 8, 8)),
        ({"kernel_size": [2, 3], "stride": 1, "dilation": [2, 1]}, (2, 6, 7)),
    )

    def to_onnx(self, g, x, p, in_shape):
        _, _, d = self.geometry()
        return g.op("MaxPool", x, dilations=list(d), **self._onnx_window(in_shape))

    def forward(self, p, x, ctx):
        xpad, pads = self._padded(x, -float("inf"))
        k, s, d = self.geometry()
        y = ops.max_forward(xpad, k, self.out_hw(x.shape[1:3]), s, d)
        return y, (xpad, y, pads)

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        xpad, y, pads = cache
        k, s, d = self.geometry()
        return crop_spatial(ops.max_backward(gy, xpad, y, k, s, d), pads), {}

    def r_forward(self, p, v, rx, cache, ctx):
        xpad, y, pads = cache  # the winners are fixed: R{y} reads R{x} at them
        k, s, d = self.geometry()
        return ops.max_gather(xpad, pad_spatial(rx, pads, 0.0), y, k, s, d), None

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        return self.backward(p, cache, rgy)[0], {}


@LAYERS.register("avgpool2d")
class AvgPool2d(Pool2d):
    """Mean over each window. count_include_pad counts the zero padding in the
    divisor (PyTorch's default); a ceil-mode overhang never counts."""

    type: Literal["avgpool2d"] = "avgpool2d"
    linear_in_x: ClassVar[bool] = True
    count_include_pad: bool = True
    examples: ClassVar = (
        ({"kernel_size": 2}, (2, 6, 6)),
        ({"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 8, 8)),
        ({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (1, 7, 7)),
    )

    def _divisor(self, x, pads):
        xp = get_array_module(x)
        H, W = x.shape[1:3]
        padded = (H + sum(pads[0]), W + sum(pads[1]))
        (pt, _), (pl, _) = pads
        if self.count_include_pad:  # input plus the declared padding, not the overhang
            ph, pw = ntuple(self.padding, 2)
            valid, offset = (H + 2 * ph, W + 2 * pw), (0, 0)
        else:
            valid, offset = (H, W), (pt, pl)
        k, s, _ = self.geometry()
        div = ops.window_counts(valid, padded, offset, k, self.out_hw((H, W)), s, xp, x.dtype)
        return div[None, :, :, None]  # (1, OH, OW, 1) broadcasts over C and N

    def to_onnx(self, g, x, p, in_shape):
        (pt, pb), (pl, pr) = self.pads(in_shape[1:])
        if not self.count_include_pad:  # divide by the input cells only
            return g.op("AveragePool", x, count_include_pad=0, **self._onnx_window(in_shape))
        # the declared zeros count, the ceil-mode overhang does not: pad explicitly first
        import numpy as np  # lazily: see backend.py
        ph, pw = ntuple(self.padding, 2)
        x = g.op("Pad", x, g.const([0, 0, ph, pw, 0, 0, ph, pw], "pads", np.int64))
        rest = ((pt - ph, pb - ph), (pl - pw, pr - pw))
        return g.op("AveragePool", x, count_include_pad=0, **self._onnx_window(in_shape, rest))

    def forward(self, p, x, ctx):
        xpad, pads = self._padded(x)
        k, s, _ = self.geometry()
        div = self._divisor(x, pads)
        y = ops.sum_forward(xpad, k, self.out_hw(x.shape[1:3]), s)
        y /= div
        return y, (xpad.shape[1:3], pads, div)

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        padded_hw, pads, div = cache
        k, s, _ = self.geometry()
        return crop_spatial(ops.sum_backward(gy / div, padded_hw, k, s), pads), {}


@LAYERS.register("lp_pool2d")
class LPPool2d(Pool2d):
    """p-norm pooling. norm 'mean': y = ((1/K)Σ x^p)^(1/p) over K window cells (the
    lecture notes' formula); norm 'sum': y = (Σ x^p)^(1/p) (PyTorch's lp_pool2d).
    Defined for x ≥ 0 (x^p of a negative x is not real for fractional p)."""

    type: Literal["lp_pool2d"] = "lp_pool2d"
    norm_type: PositiveFloat = 2.0
    norm: Literal["mean", "sum"] = "mean"
    padding: Literal[0] = 0
    examples: ClassVar = (
        ({"kernel_size": 2, "norm_type": 5}, (2, 6, 6)),
        ({"kernel_size": 3, "stride": 2, "norm_type": 2.5, "norm": "sum"}, (2, 7, 7)),
    )

    def _scale(self):
        return math.prod(self.geometry()[0]) if self.norm == "mean" else 1

    def to_onnx(self, g, x, p, in_shape):
        # (Σ x^p / scale)^(1/p) = (mean x^p · K/scale)^(1/p): any real p, unlike ONNX's LpPool
        K = math.prod(self.geometry()[0])
        powered = g.op("Pow", x, g.const(self.norm_type, "p"))
        mean = g.op("AveragePool", powered, count_include_pad=1, **self._onnx_window(in_shape))
        if K != self._scale():
            mean = g.op("Mul", mean, g.const(K / self._scale(), "cells"))
        return g.op("Pow", mean, g.const(1.0 / self.norm_type, "inv_p"))

    def forward(self, p, x, ctx):
        k, s, _ = self.geometry()
        P = self.norm_type
        xpad, pads = self._padded(x)
        total = ops.sum_forward(xpad ** P, k, self.out_hw(x.shape[1:3]), s)
        y = (total / self._scale()) ** (1.0 / P)
        return y, (xpad, pads, y)

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        xpad, pads, y = cache
        k, s, _ = self.geometry()
        P = self.norm_type
        # ∂y/∂x = x^(p−1) / (K · y^(p−1)): the per-window part first, the per-tap part inside.
        g = gy / (self._scale() * y ** (P - 1))
        gx = ops.sum_backward(g, xpad.shape[1:3], k, s, per_tap=lambda sl: xpad[sl] ** (P - 1))
        return crop_spatial(gx, pads), {}

    def r_forward(self, p, v, rx, cache, ctx):
        """R{T} = Σ_window p·x^(p−1)·R{x}, R{y} = y^(1−p)·R{T}/(p·scale), T the window sums."""
        xpad, pads, y = cache
        k, s, _ = self.geometry()
        P = self.norm_type
        rxpad = pad_spatial(rx, pads)
        rtotal = ops.sum_forward(P * xpad ** (P - 1) * rxpad, k, self.out_hw(rx.shape[1:3]), s)
        ry = y ** (1 - P) * rtotal / (P * self._scale())
        return ry, (rxpad, ry)

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        """R of gx = Σ g·x^(p−1), g = gy/(scale·y^(p−1)): R{g} = (R{gy} − (p−1)·gy·R{y}/y)
        /(scale·y^(p−1)), and x^(p−1) contributes (p−1)·x^(p−2)·R{x}."""
        (xpad, pads, y), (rxpad, ry) = cache, rcache
        k, s, _ = self.geometry()
        P, scale = self.norm_type, self._scale()
        g = gy / (scale * y ** (P - 1))
        rg = (rgy - (P - 1) * gy * ry / y) / (scale * y ** (P - 1))
        hw = xpad.shape[1:3]
        rgx = ops.sum_backward(rg, hw, k, s, per_tap=lambda sl: xpad[sl] ** (P - 1)) + \
            ops.sum_backward(g, hw, k, s,
                             per_tap=lambda sl: (P - 1) * xpad[sl] ** (P - 2) * rxpad[sl])
        return crop_spatial(rgx, pads), {}
