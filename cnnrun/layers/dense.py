"""Fully connected layer, flatten and dropout."""

import math
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt

from ..ops.parallel import matmul
from ..registry import LAYERS
from .base import Layer, ParamLayer, ShapeError
from .streams import draw_uniform


@LAYERS.register("linear")
class Linear(ParamLayer):
    """y = W x + b on a (features,) input; in_features is inferred.

    Weight (out_features, in_features) and bias (out_features,), as in PyTorch.
    """

    type: Literal["linear"] = "linear"
    out_features: PositiveInt
    bias: bool = True
    examples: ClassVar = (({"out_features": 3}, (5,)), ({"out_features": 4, "bias": False}, (6,)))

    def output_shape(self, in_shape):
        if len(in_shape) != 1:
            raise ShapeError(f"{self.label()}: linear expects a flat (features,) input, got shape "
                             f"{tuple(in_shape)}; insert a flatten (or global_avgpool) layer "
                             f"before it")
        return (self.out_features,)

    def receptive_field(self, rf, in_shape):
        return rf.whole_grid()

    def param_shapes(self, in_shape):
        shapes = {"weight": (self.out_features, in_shape[0])}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def macs(self, in_shape):
        return self.out_features * in_shape[0]

    def to_onnx(self, g, x, p, in_shape):
        inputs = [x, g.const(p["weight"], "weight")] + \
            ([g.const(p["bias"], "bias")] if self.bias else [])
        return g.op("Gemm", *inputs, transB=1)  # x Wᵀ + b on (N, features)

    def forward(self, p, x, ctx):
        y = matmul(p["weight"], x)  # (O, F) @ (F, N) -> (O, N), on all workers
        if self.bias:
            y += p["bias"][:, None]
        return y, x

    def backward(self, p, cache, gy, need_gx=True):
        x = cache
        gx = matmul(p["weight"].T, gy) if need_gx else None  # (F, O) @ (O, N)
        if not self.trainable:
            return gx, {}
        grads = {"weight": matmul(gy, x.T)}  # (O, N) @ (N, F)
        if self.bias:
            grads["bias"] = gy.sum(axis=1)
        return gx, grads

    def r_forward(self, p, v, rx, cache, ctx):
        x = cache  # R{y} = W·R{x} + V·x + V_b
        ry = p["weight"] @ rx
        if "weight" in v:
            ry = ry + v["weight"] @ x
        if self.bias and "bias" in v:
            ry = ry + v["bias"][:, None]
        return ry, rx

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        x, rx = cache, rcache
        rgx = p["weight"].T @ rgy + (v["weight"].T @ gy if "weight" in v else 0.0)
        if not self.trainable:
            return rgx, {}
        rgrads = {"weight": rgy @ x.T + gy @ rx.T}
        if self.bias:
            rgrads["bias"] = rgy.sum(axis=1)
        return rgx, rgrads


@LAYERS.register("flatten")
class Flatten(Layer):
    """(C, H, W) → (C·H·W,) in C, H, W order: PyTorch's flatten of NCHW."""

    type: Literal["flatten"] = "flatten"
    linear_in_x: ClassVar[bool] = True
    examples: ClassVar = (({}, (2, 3, 4)), ({}, (3, 5)))

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)

    def to_onnx(self, g, x, p, in_shape):
        return g.op("Flatten", x, axis=1)

    def forward(self, p, x, ctx):
        return x.reshape(-1, x.shape[-1]), x.shape  # (C, H, W, N) -> (C·H·W, N)

    def backward(self, p, cache, gy, need_gx=True):
        return (gy.reshape(cache) if need_gx else None), {}


@LAYERS.register("dropout")
class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the
    rest by 1/(1−p); the identity in evaluation. Any input shape."""

    type: Literal["dropout"] = "dropout"
    p: float = Field(0.5, ge=0.0, lt=1.0)
    examples: ClassVar = (({"p": 0.3}, (3, 4, 4)), ({"p": 0.5}, (7,)))

    def to_onnx(self, g, x, p, in_shape):
        return x  # the identity in evaluation

    def separable(self, train):
        return True  # each sample's mask comes from its own stream (layers/streams.py)

    def draws(self, train):
        return train and self.p > 0.0

    def forward(self, p, x, ctx):
        if not ctx.train or self.p == 0.0:
            return x, None
        if ctx.rng is None:
            raise RuntimeError("dropout in training mode needs a random generator in the context")
        keep = draw_uniform(ctx.rng, x) >= self.p
        mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * mask, mask

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        return (gy if cache is None else gy * cache), {}

    def r_forward(self, p, v, rx, cache, ctx):
        return (rx if cache is None else rx * cache), None  # the same mask

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        return (rgy if cache is None else rgy * cache), {}
