"""Element-wise activations and softmax, each with its derivative beside it."""

import functools
import math
from typing import ClassVar, Literal

from pydantic import PositiveFloat

from ..ops.backend import get_array_module, is_numpy
from ..ops import parallel
from ..ops.softmax import log_softmax, softmax, softmax_backward
from ..registry import LAYERS
from .base import Layer

ANY_SHAPE = (({}, (3, 4, 5)), ({}, (6,)))
ZERO_RUN = 1 << 14  # ReLU's zeros: the longest run, 64 KB in float32


@functools.cache
def _zeros(n: int, dtype: str):
    """A read-only run of n zeros (shared: ReLU broadcasts it, never writes it)."""
    import numpy as np  # noqa: PLC0415 - NumPy only where arrays are made
    z = np.zeros(n, dtype=dtype)
    z.flags.writeable = False
    return z


class Elementwise(Layer):
    """y = f(x) per unit; subclasses give f and f' (from x and y) side by side."""

    derivative_from_y: ClassVar[bool] = False  # df and d2f use only y (x is then not kept)
    onnx_op: ClassVar[str | None] = None  # the ONNX operator that computes f, if one does

    def to_onnx(self, g, x, p, in_shape):
        return g.op(self.onnx_op, x)

    def f(self, xp, x):
        raise NotImplementedError

    def f_into(self, xp, x, out):
        """out[...] = f(x); layers whose ufunc takes ``out=`` skip the temporary."""
        out[...] = self.f(xp, x)

    def df(self, xp, x, y):
        raise NotImplementedError

    def d2f(self, xp, x, y):
        """f''(x), for the R-operator: R{gx} = f'·R{gy} + f''·R{x}·gy."""
        raise NotImplementedError

    def r_forward(self, p, v, rx, cache, ctx):
        x, y = cache
        return self.df(get_array_module(rx), x, y) * rx, rx

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        x, y = cache
        xp = get_array_module(gy)
        return self.df(xp, x, y) * rgy + self.d2f(xp, x, y) * rcache * gy, {}

    def forward(self, p, x, ctx):
        xp = get_array_module(x)
        if parallel.splits(x):  # large: by channels on every core
            y = xp.empty_like(x)
            parallel.by_channels(lambda c: self.f_into(xp, x[c], y[c]), x)
        else:
            y = self.f(xp, x)
        # Where f' and f'' are read off y alone, x is not kept: the layer before (a batch
        # norm, say) then has its output freed here rather than held until backward.
        return y, (None if self.derivative_from_y else x, y)

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        x, y = cache
        xp = get_array_module(gy)
        gx = xp.empty_like(gy)

        def part(c):  # channels c (all of them when gy is small)
            xc = None if x is None else x[c]
            xp.multiply(gy[c], self.df(xp, xc, y[c]), out=gx[c])
        parallel.by_channels(part, gy)
        return gx, {}


@LAYERS.register("relu")
class ReLU(Elementwise):
    """y = max(x, 0); y' = 1 for x > 0, else 0. Any shape in, the same shape out."""

    type: Literal["relu"] = "relu"
    onnx_op: ClassVar = "Relu"
    derivative_from_y: ClassVar[bool] = True
    examples: ClassVar = ANY_SHAPE

    def f(self, xp, x):
        out = xp.empty_like(x)
        self.f_into(xp, x, out)
        return out

    def f_into(self, xp, x, out):
        """out = max(x, 0). NumPy's maximum against a scalar takes a slow loop: on 2 M
        float32 values 0.62 ms, 4.6× a multiply. Against a contiguous run of zeros,
        broadcast over rows, it takes its vector loop: 0.18 ms. (NaN stays NaN in both.)"""
        run = math.gcd(x.size, ZERO_RUN)
        if not (is_numpy(xp) and run >= 256 and x.flags.c_contiguous and out.flags.c_contiguous):
            xp.maximum(x, 0, out=out)
            return
        zeros = _zeros(run, x.dtype.str)
        xp.maximum(x.reshape(-1, run), zeros, out=out.reshape(-1, run))  # (rows, run): views

    def df(self, xp, x, y):
        return y > 0  # exactly where x > 0

    def d2f(self, xp, x, y):
        return 0.0


@LAYERS.register("leaky_relu")
class LeakyReLU(Elementwise):
    """y = x for x > 0, else negative_slope·x. Any shape in, the same shape out."""

    type: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float = 0.01
    examples: ClassVar = (({"negative_slope": 0.2}, (3, 4, 5)), ({}, (6,)))

    def to_onnx(self, g, x, p, in_shape):
        return g.op("LeakyRelu", x, alpha=self.negative_slope)

    def f(self, xp, x):
        return xp.where(x > 0, x, x * self.negative_slope)

    def df(self, xp, x, y):
        return xp.where(x > 0, x.dtype.type(1), x.dtype.type(self.negative_slope))

    def d2f(self, xp, x, y):
        return 0.0


@LAYERS.register("sigmoid")
class Sigmoid(Elementwise):
    """Logistic sigmoid with slope β: y = 1/(1 + e^(−βx)); y' = β·y·(1 − y).

    Computed as ½(1 + tanh(βx/2)), which never overflows.
    """

    type: Literal["sigmoid"] = "sigmoid"
    slope: PositiveFloat = 1.0
    derivative_from_y: ClassVar[bool] = True
    examples: ClassVar = (({"slope": 2.5}, (3, 4, 5)), ({}, (6,)))

    def to_onnx(self, g, x, p, in_shape):
        z = x if self.slope == 1.0 else g.op("Mul", x, g.const(self.slope, "slope"))
        return g.op("Sigmoid", z)

    def f(self, xp, x):
        return 0.5 * (1 + xp.tanh(x * (0.5 * self.slope)))

    def df(self, xp, x, y):
        return self.slope * y * (1 - y)

    def d2f(self, xp, x, y):
        return self.slope ** 2 * y * (1 - y) * (1 - 2 * y)


@LAYERS.register("tanh")
class Tanh(Elementwise):
    """y = tanh(x); y' = 1 − y². Any shape in, the same shape out."""

    type: Literal["tanh"] = "tanh"
    onnx_op: ClassVar = "Tanh"
    derivative_from_y: ClassVar[bool] = True
    examples: ClassVar = ANY_SHAPE

    def f(self, xp, x):
        return xp.tanh(x)

    def df(self, xp, x, y):
        return 1 - y * y

    def d2f(self, xp, x, y):
        return -2 * y * (1 - y * y)


@LAYERS.register("scaled_tanh")
class ScaledTanh(Elementwise):
    """LeCun's squashing function y = A·tanh(S·x), A = 1.7159, S = 2/3 (so f(±1) ≈ ±1);
    y' = A·S·(1 − (y/A)²)."""

    type: Literal["scaled_tanh"] = "scaled_tanh"
    amplitude: float = 1.7159
    slope: float = 2.0 / 3.0
    derivative_from_y: ClassVar[bool] = True
    examples: ClassVar = (({}, (3, 4, 5)), ({"amplitude": 2.0, "slope": 0.5}, (6,)))

    def to_onnx(self, g, x, p, in_shape):
        t = g.op("Tanh", g.op("Mul", x, g.const(self.slope, "slope")))
        return g.op("Mul", t, g.const(self.amplitude, "amplitude"))

    def f(self, xp, x):
        return self.amplitude * xp.tanh(x * self.slope)

    def df(self, xp, x, y):
        t = y / self.amplitude
        return self.amplitude * self.slope * (1 - t * t)

    def d2f(self, xp, x, y):
        t = y / self.amplitude
        return -2 * self.amplitude * self.slope ** 2 * t * (1 - t * t)


@LAYERS.register("clip")
class Clip(Elementwise):
    """y = min(max(x, min_val), max_val); y' = 1 strictly between the bounds, else 0.
    The defaults are ReLU6 (MobileNet's); PyTorch's hardtanh, ONNX's Clip."""

    type: Literal["clip"] = "clip"
    min_val: float = 0.0
    max_val: float = 6.0
    derivative_from_y: ClassVar[bool] = True
    examples: ClassVar = (({}, (3, 4, 4)), ({"min_val": -1.0, "max_val": 0.5}, (7,)))

    def to_onnx(self, g, x, p, in_shape):
        return g.op("Clip", x, g.const(self.min_val, "min"), g.const(self.max_val, "max"))

    def f(self, xp, x):
        return xp.clip(x, x.dtype.type(self.min_val), x.dtype.type(self.max_val))

    def df(self, xp, x, y):
        return ((y > self.min_val) & (y < self.max_val)).astype(y.dtype)

    def d2f(self, xp, x, y):
        return xp.zeros_like(y)


@LAYERS.register("softmax")
class Softmax(Layer):
    """y_c = e^(x_c − max) / Σ_c' e^(x_c' − max) over the channel axis (PyTorch's dim=1).

    For training a classifier use the fused softmax cross-entropy loss instead;
    this layer is for networks whose output must be probabilities.
    """

    type: Literal["softmax"] = "softmax"
    examples: ClassVar = (({}, (5,)), ({}, (4, 3, 2)))

    def to_onnx(self, g, x, p, in_shape):
        return g.op("Softmax", x, axis=1)  # the channel axis, batch first

    def forward(self, p, x, ctx):
        y = softmax(x, axis=0)
        return y, y

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        return softmax_backward(cache, gy, axis=0), {}

    def r_forward(self, p, v, rx, cache, ctx):
        y = cache
        ry = y * (rx - (y * rx).sum(axis=0, keepdims=True))
        return ry, ry

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        y, ry = cache, rcache
        s = (gy * y).sum(axis=0, keepdims=True)
        rs = (rgy * y + gy * ry).sum(axis=0, keepdims=True)
        return ry * (gy - s) + y * (rgy - rs), {}


@LAYERS.register("log_softmax")
class LogSoftmax(Layer):
    """y_c = x_c − log Σ_c' e^(x_c') over the channel axis (PyTorch's dim=1), shifted by the
    maximum. p = e^y is the softmax: ∂E/∂x = gy − p·Σ_c gy."""

    type: Literal["log_softmax"] = "log_softmax"
    examples: ClassVar = (({}, (5,)), ({}, (4, 3, 2)))

    def to_onnx(self, g, x, p, in_shape):
        return g.op("LogSoftmax", x, axis=1)

    def forward(self, p, x, ctx):
        y = log_softmax(x, axis=0)
        return y, y

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        xp = get_array_module(gy)
        return gy - xp.exp(cache) * gy.sum(axis=0, keepdims=True), {}

    def r_forward(self, p, v, rx, cache, ctx):
        prob = get_array_module(rx).exp(cache)
        ry = rx - (prob * rx).sum(axis=0, keepdims=True)
        return ry, ry

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        prob = get_array_module(gy).exp(cache)
        s, rs = gy.sum(axis=0, keepdims=True), rgy.sum(axis=0, keepdims=True)
        return rgy - prob * (rcache * s + rs), {}
