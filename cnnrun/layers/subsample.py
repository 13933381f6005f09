"""LeNet-5's trainable subsampling (its S-layers; Bouvrie's notes, §2.2)."""

import math
from typing import ClassVar, Literal

from pydantic import PositiveInt

from ..ops import pool as ops
from ..ops.rows import channel_sums
from ..registry import LAYERS
from .base import ParamLayer, ShapeError


@LAYERS.register("subsample2d")
class Subsample2d(ParamLayer):
    """Trainable subsampling: y_j = β_j · down(x_j) + b_j, down summing each n×n block.

    Input (C, H, W) → (C, ⌊H/n⌋, ⌊W/n⌋); parameters weight β (C,) and bias b (C,).
    Gradients: ∂E/∂b_j = Σ δ_j, ∂E/∂β_j = Σ δ_j ∘ down(x_j) (down(x) kept from the
    forward pass), and ∂E/∂x_j = β_j · up(δ_j), up the Kronecker product with an n×n
    block of ones. Where several next-layer maps read map j, their contributions
    arrive already summed in δ_j (Bouvrie's note forgets that sum). Put the squashing
    function after this layer. β starts at 1/n² (a plain average), b at 0.
    """

    type: Literal["subsample2d"] = "subsample2d"
    kernel_size: PositiveInt = 2
    ranks: ClassVar = (3,)
    examples: ClassVar = (({"kernel_size": 2}, (3, 4, 6)), ({"kernel_size": 3}, (2, 7, 6)))

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        n = self.kernel_size
        if min(in_shape[1:]) < n:
            raise ShapeError(f"{self.label()}: a {n}×{n} block does not fit input shape "
                             f"{tuple(in_shape)}")
        return (in_shape[0], in_shape[1] // n, in_shape[2] // n)

    def receptive_field(self, rf, in_shape):
        n = (self.kernel_size,) * 2
        return rf.window(n, n, (0, 0), grid=self.output_shape(in_shape)[1:])

    def param_shapes(self, in_shape):
        return {"weight": (in_shape[0],), "bias": (in_shape[0],)}

    def init_state(self, in_shape, rng):
        import numpy as np  # lazily: see backend.py
        C = in_shape[0]
        state = {"weight": np.full(C, 1.0 / self.kernel_size ** 2), "bias": np.zeros(C)}
        state.update(self.given_weights(self.param_shapes(in_shape)))
        return state

    def macs(self, in_shape):  # a depthwise n×n convolution whose kernel is β_j everywhere
        return math.prod(self.output_shape(in_shape)) * self.kernel_size ** 2

    def to_onnx(self, g, x, p, in_shape):
        n = self.kernel_size  # β·(block sum) + b = (β·n²)·(block mean) + b
        mean = g.op("AveragePool", x, kernel_shape=[n, n], strides=[n, n])
        col = (-1, 1, 1)  # (C,) -> (C, 1, 1): broadcast over H and W
        y = g.op("Mul", mean, g.const((p["weight"] * n * n).reshape(col), "beta"))
        return g.op("Add", y, g.const(p["bias"].reshape(col), "bias"))

    def forward(self, p, x, ctx):
        n = self.kernel_size
        C, H, W, N = x.shape
        out_hw = (H // n, W // n)
        down = ops.sum_forward(x, (n, n), out_hw, (n, n))  # (C, OH, OW, N)
        y = down * p["weight"][:, None, None, None] + p["bias"][:, None, None, None]
        return y, (down, (H, W))

    def backward(self, p, cache, gy, need_gx=True):
        down, hw = cache
        n = self.kernel_size
        gx = None
        if need_gx:
            g = gy * p["weight"][:, None, None, None]
            gx = ops.sum_backward(g, hw, (n, n), (n, n))
        if not self.trainable:
            return gx, {}
        return gx, {"weight": (gy * down).sum(axis=(1, 2, 3)), "bias": channel_sums(gy)}

    def r_forward(self, p, v, rx, cache, ctx):
        down, hw = cache
        n = self.kernel_size
        col = (slice(None), None, None, None)
        rdown = ops.sum_forward(rx, (n, n), down.shape[1:3], (n, n))
        ry = rdown * p["weight"][col]
        if "weight" in v:
            ry = ry + down * v["weight"][col]
        if "bias" in v:
            ry = ry + v["bias"][col]
        return ry, rdown

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        down, hw = cache
        rdown = rcache
        n = self.kernel_size
        col = (slice(None), None, None, None)
        g = rgy * p["weight"][col] + (gy * v["weight"][col] if "weight" in v else 0.0)
        rgx = ops.sum_backward(g, hw, (n, n), (n, n))
        if not self.trainable:
            return rgx, {}
        return rgx, {"weight": (rgy * down + gy * rdown).sum(axis=(1, 2, 3)),
                     "bias": channel_sums(rgy)}
