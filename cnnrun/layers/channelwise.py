"""Per-channel layers that imported networks bring: PReLU's learned slopes, Caffe's Scale
(a per-channel affine map), ShuffleNet's channel shuffle and zero padding.

Arrays are batch-last, (C, …, N): a per-channel vector is broadcast as (C, 1, …, 1), and a
per-channel gradient sums over every other axis.
"""

import math
from typing import ClassVar, Literal, Union

from pydantic import NonNegativeInt, PositiveInt

from ..ops.backend import get_array_module
from ..ops.spatial import crop_spatial, pad_spatial
from ..ops.shapes import ntuple
from ..registry import LAYERS
from .base import Layer, ParamLayer, ShapeError


def per_channel(v, ndim: int):
    """(C,) or (1,) as (C, 1, …, 1) for an array of ndim axes."""
    return v.reshape((-1,) + (1,) * (ndim - 1))


def channel_sums(a, like):
    """Σ of a over every axis but the channel axis, shaped as ``like`` ((C,) or (1,))."""
    axes = tuple(range(1, a.ndim)) if like.shape[0] > 1 else None
    return a.sum(axis=axes).reshape(like.shape)


class PerChannelParams(ParamLayer):
    """Parameters of one value per channel (or one for all), starting at fixed values."""

    def start(self, pname: str) -> float:
        raise NotImplementedError

    def init_state(self, in_shape, rng):
        import numpy as np  # lazily: see backend.py
        shapes = self.param_shapes(in_shape)
        state = {n: np.full(s, self.start(n), dtype=np.float64) for n, s in shapes.items()}
        state.update(self.given_weights(shapes))
        return state

    def macs(self, in_shape):
        return math.prod(in_shape)  # one multiply per element


@LAYERS.register("prelu")
class PReLU(PerChannelParams):
    """y = x for x > 0, a·x otherwise, the slope a learned (PyTorch's nn.PReLU): one for all
    channels, or one per channel with ``channelwise``. ∂y/∂a = min(x, 0)."""

    type: Literal["prelu"] = "prelu"
    channelwise: bool = False
    init_slope: float = 0.25
    examples: ClassVar = (({}, (3, 4, 4)), ({"channelwise": True}, (3, 4, 4)),
                          ({"channelwise": True}, (5,)))

    def start(self, pname):
        return self.init_slope

    def param_shapes(self, in_shape):
        return {"weight": (in_shape[0] if self.channelwise else 1,)}

    def to_onnx(self, g, x, p, in_shape):
        slope = p["weight"].reshape((-1,) + (1,) * (len(in_shape) - 1))  # (C, 1, …) broadcast
        return g.op("PRelu", x, g.const(slope, "slope"))

    def _slopes(self, p, x):
        xp = get_array_module(x)
        return xp.where(x > 0, x.dtype.type(1), per_channel(p["weight"], x.ndim).astype(x.dtype))

    def forward(self, p, x, ctx):
        return x * self._slopes(p, x), x

    def backward(self, p, cache, gy, need_gx=True):
        x = cache
        xp = get_array_module(gy)
        grads = {"weight": channel_sums(gy * xp.minimum(x, 0), p["weight"])} \
            if self.trainable else {}
        return (gy * self._slopes(p, x) if need_gx else None), grads

    def r_forward(self, p, v, rx, cache, ctx):
        x = cache
        xp = get_array_module(rx)
        ry = rx * self._slopes(p, x)
        if "weight" in v:  # R{a}·min(x, 0)
            ry = ry + per_channel(v["weight"], x.ndim) * xp.minimum(x, 0)
        return ry, rx

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        x, rx = cache, rcache
        xp = get_array_module(gy)
        below = x <= 0
        rgx = rgy * self._slopes(p, x)
        if "weight" in v:
            rgx = rgx + gy * xp.where(below, per_channel(v["weight"], x.ndim), 0)
        ra = channel_sums(rgy * xp.minimum(x, 0) + gy * xp.where(below, rx, 0), p["weight"])
        return rgx, ({"weight": ra} if self.trainable else {})


@LAYERS.register("affine")
class Affine(PerChannelParams):
    """y = w_c·x + b_c per channel: Caffe's Scale layer (with ``bias``, Scale + Bias), what an
    imported per-channel Mul and Add become where no batch norm or convolution absorbs them."""

    type: Literal["affine"] = "affine"
    bias: bool = True
    examples: ClassVar = (({}, (3, 4, 4)), ({"bias": False}, (5,)))

    def start(self, pname):
        return 1.0 if pname == "weight" else 0.0

    def param_shapes(self, in_shape):
        C = in_shape[0]
        return {"weight": (C,), "bias": (C,)} if self.bias else {"weight": (C,)}

    def to_onnx(self, g, x, p, in_shape):
        shape = (-1,) + (1,) * (len(in_shape) - 1)  # (C, 1, …): broadcast over N first
        y = g.op("Mul", x, g.const(p["weight"].reshape(shape), "scale"))
        return g.op("Add", y, g.const(p["bias"].reshape(shape), "shift")) if self.bias else y

    def forward(self, p, x, ctx):
        y = x * per_channel(p["weight"], x.ndim)
        return (y + per_channel(p["bias"], x.ndim) if self.bias else y), x

    def backward(self, p, cache, gy, need_gx=True):
        x = cache
        grads = {}
        if self.trainable:
            grads["weight"] = channel_sums(gy * x, p["weight"])
            if self.bias:
                grads["bias"] = channel_sums(gy, p["bias"])
        return (gy * per_channel(p["weight"], gy.ndim) if need_gx else None), grads

    def r_forward(self, p, v, rx, cache, ctx):
        x = cache
        ry = rx * per_channel(p["weight"], x.ndim)
        if "weight" in v:
            ry = ry + per_channel(v["weight"], x.ndim) * x
        if "bias" in v:
            ry = ry + per_channel(v["bias"], x.ndim)
        return ry, rx

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        x, rx = cache, rcache
        rgx = rgy * per_channel(p["weight"], gy.ndim)
        if "weight" in v:
            rgx = rgx + gy * per_channel(v["weight"], gy.ndim)
        grads = {}
        if self.trainable:
            grads["weight"] = channel_sums(rgy * x + gy * rx, p["weight"])
            if self.bias:
                grads["bias"] = channel_sums(rgy, p["bias"])
        return rgx, grads


@LAYERS.register("channel_shuffle")
class ChannelShuffle(Layer):
    """ShuffleNet's shuffle: the channels seen as (groups, C/groups) and transposed, so output
    channel j is input channel (j mod groups)·C/groups + j div groups."""

    type: Literal["channel_shuffle"] = "channel_shuffle"
    groups: PositiveInt
    linear_in_x: ClassVar[bool] = True
    examples: ClassVar = (({"groups": 2}, (6, 3, 3)), ({"groups": 3}, (6,)))

    def output_shape(self, in_shape):
        if in_shape[0] % self.groups:
            raise ShapeError(f"{self.label()}: {in_shape[0]} channels do not split into "
                             f"{self.groups} groups")
        return tuple(in_shape)

    def _order(self, C, xp):
        j = xp.arange(C)
        return (j % self.groups) * (C // self.groups) + j // self.groups

    def to_onnx(self, g, x, p, in_shape):
        C, G = in_shape[0], self.groups
        split = g.op("Reshape", x, g.const([0, G, C // G, -1], "shape", dtype="int64"))
        swapped = g.op("Transpose", split, perm=[0, 2, 1, 3])  # (N, C/G, G, …)
        return g.op("Reshape", swapped, g.const([0, *in_shape], "shape", dtype="int64"))

    def forward(self, p, x, ctx):
        return x[self._order(x.shape[0], get_array_module(x))], None

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        xp = get_array_module(gy)
        gx = xp.empty_like(gy)
        gx[self._order(gy.shape[0], xp)] = gy  # a permutation: each channel written once
        return gx, {}


@LAYERS.register("pad")
class Pad(Layer):
    """Zero padding of (C, H, W) maps: ``padding`` is p, (p_h, p_w), or (top, bottom, left,
    right) as an imported ONNX Pad gives it."""

    type: Literal["pad"] = "pad"
    padding: Union[NonNegativeInt, tuple[NonNegativeInt, NonNegativeInt],
                   tuple[NonNegativeInt, NonNegativeInt, NonNegativeInt, NonNegativeInt]]
    linear_in_x: ClassVar[bool] = True
    ranks: ClassVar = (3,)
    examples: ClassVar = (({"padding": 1}, (2, 3, 4)), ({"padding": [0, 2, 1, 0]}, (1, 3, 3)))

    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        p = self.padding
        if isinstance(p, int) or len(p) == 2:
            ph, pw = ntuple(p, 2)
            return (ph, ph), (pw, pw)
        return (p[0], p[1]), (p[2], p[3])

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        (t, b), (left, right) = self.pads()
        return (in_shape[0], in_shape[1] + t + b, in_shape[2] + left + right)

    def receptive_field(self, rf, in_shape):
        (t, _), (left, _) = self.pads()
        return rf.window((1, 1), (1, 1), (t, left), grid=self.output_shape(in_shape)[1:])

    def to_onnx(self, g, x, p, in_shape):
        (t, b), (left, right) = self.pads()
        pads = g.const([0, 0, t, left, 0, 0, b, right], "pads", dtype="int64")
        return g.op("Pad", x, pads)  # mode "constant", value 0

    def forward(self, p, x, ctx):
        return pad_spatial(x, self.pads()), None

    def backward(self, p, cache, gy, need_gx=True):
        return (crop_spatial(gy, self.pads()) if need_gx else None), {}
