"""Expanding layers of the lecture notes: transposed convolution and upsampling."""

import math
from typing import ClassVar, Literal, Union

from pydantic import NonNegativeInt, PositiveInt

from ..ops.backend import get_array_module
from ..ops.conv import Patches, conv_forward, conv_grad_weight
from ..ops.conv_grad import conv_grad_input
from ..ops.rows import channel_sums
from ..ops.spatial import pad_spatial
from ..ops.shapes import conv_transpose_out_size, ntuple
from ..registry import LAYERS
from .base import IntOrPair, Layer, ParamLayer, ShapeError

NonNegPair = Union[NonNegativeInt, tuple[NonNegativeInt, NonNegativeInt]]


@LAYERS.register("conv_transpose2d")
class ConvTranspose2d(ParamLayer):
    """The exact adjoint of conv2d (a "fractionally strided" convolution).

    Input (C, H, W) → (out_channels, OH, OW), OH = (H−1)s − 2p + d(k−1) + output_padding + 1.
    Weight (C, out_channels/groups, KH, KW) and bias (out_channels,), as in PyTorch.
    Forward is conv2d's input gradient; backward is conv2d's forward and weight gradient.
    """

    type: Literal["conv_transpose2d"] = "conv_transpose2d"
    out_channels: PositiveInt
    kernel_size: IntOrPair
    stride: IntOrPair = 1
    padding: NonNegPair = 0
    output_padding: NonNegPair = 0
    dilation: IntOrPair = 1
    groups: PositiveInt = 1
    bias: bool = True
    ranks: ClassVar = (3,)
    examples: ClassVar = (
        ({"out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
         (2, 3, 4)),
        ({"out_channels": 4, "kernel_size": [2, 3], "stride": [1, 2], "groups": 2,
          "dilation": [2, 1]}, (2, 3, 3)),
    )

    def _geo(self):
        return (ntuple(self.kernel_size, 2), ntuple(self.stride, 2), ntuple(self.padding, 2),
                ntuple(self.dilation, 2), ntuple(self.output_padding, 2))

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        k, s, p, d, op = self._geo()
        for name, n in (("input channels", in_shape[0]), ("out_channels", self.out_channels)):
            if n % self.groups:
                raise ShapeError(f"{self.label()}: {name} ({n}) must be divisible by groups")
        if any(o >= max(si, di) for o, si, di in zip(op, s, d)):
            raise ShapeError(f"{self.label()}: output_padding must be smaller than stride or "
                             f"dilation (as in PyTorch)")
        out = tuple(conv_transpose_out_size(n, *a) for n, *a in zip(in_shape[1:], k, s, p, d, op))
        if min(out) < 1:
            raise ShapeError(f"{self.label()}: padding {self.padding} leaves no output for "
                             f"input shape {tuple(in_shape)}")
        return (self.out_channels, *out)

    def receptive_field(self, rf, in_shape):
        # An output unit reads about k/s inputs per axis; in input pixels the jump shrinks by s.
        k, s, p, d, _ = self._geo()
        size = tuple(r + (-(-(di * (ki - 1) + 1) // si) - 1) * j
                     for r, j, ki, si, di in zip(rf.size, rf.jump, k, s, d))
        jump = tuple(max(1, j // si) for j, si in zip(rf.jump, s))
        return type(rf)(size, jump, rf.start, self.output_shape(in_shape)[1:])

    def param_shapes(self, in_shape):
        k = ntuple(self.kernel_size, 2)
        shapes = {"weight": (in_shape[0], self.out_channels // self.groups, *k)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs(self, in_shape):
        k = ntuple(self.kernel_size, 2)
        return math.prod(in_shape) * (self.out_channels // self.groups) * math.prod(k)

    def to_onnx(self, g, x, p, in_shape):
        k, s, pad, d, op = self._geo()
        inputs = [x, g.const(p["weight"], "weight")] + \
            ([g.const(p["bias"], "bias")] if self.bias else [])
        return g.op("ConvTranspose", *inputs, kernel_shape=list(k), strides=list(s),
                    dilations=list(d), group=self.groups, output_padding=list(op),
                    pads=list(pad) * 2)

    def forward(self, p, x, ctx):
        k, s, pad, d, _ = self._geo()
        out_hw = self.output_shape(x.shape[:-1])[1:]
        pads = tuple((pi, pi) for pi in pad)
        y = conv_grad_input(x, p["weight"], out_hw, s, pads, d, self.groups)
        if self.bias:
            y = y + p["bias"][:, None, None, None]
        return y, x

    def backward(self, p, cache, gy, need_gx=True):
        x = cache
        k, s, pad, d, _ = self._geo()
        pads = tuple((pi, pi) for pi in pad)
        gx, patches = conv_forward(gy, p["weight"], None, s, pads, d, self.groups) if need_gx \
            else (None, None)
        if not self.trainable:
            return gx, {}
        if patches is None:
            patches = Patches(pad_spatial(gy, pads), k, s, d, self.groups)
        grads = {"weight": conv_grad_weight(x, patches, p["weight"].shape, self.groups)}
        if self.bias:
            grads["bias"] = channel_sums(gy)
        return gx, grads

    # The layer is bilinear in (x, W): each R-quantity is the pass itself with one factor
    # replaced by its direction, plus the same with the other.
    def r_forward(self, p, v, rx, cache, ctx):
        k, s, pad, d, _ = self._geo()
        pads = tuple((pi, pi) for pi in pad)
        out_hw = self.output_shape(rx.shape[:-1])[1:]
        ry = conv_grad_input(rx, p["weight"], out_hw, s, pads, d, self.groups)  # W ⊛ R{x}
        if "weight" in v:
            ry = ry + conv_grad_input(cache, v["weight"], out_hw, s, pads, d, self.groups)
        if self.bias and "bias" in v:
            ry = ry + v["bias"][:, None, None, None]
        return ry, rx

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        x, rx = cache, rcache
        rgx, g_x = self.backward(p, x, rgy)  # W and x against R{gy}
        with_v = "weight" in v
        gv, g_rx = self.backward({**p, "weight": v["weight"]} if with_v else p, rx, gy,
                                 need_gx=with_v)  # V against gy, and R{x} against gy
        if with_v:
            rgx = rgx + gv
        if not self.trainable:
            return rgx, {}
        grads = {"weight": g_x["weight"] + g_rx["weight"]}
        if self.bias:
            grads["bias"] = g_x["bias"]  # Σ R{gy}
        return rgx, grads


@LAYERS.register("upsample2d")
class Upsample2d(Layer):
    """Upsampling by an integer factor s per axis. Input (C, H, W).

    mode 'nearest': each pixel repeated into an s×s block → (C, sH, sW).
    mode 'zeros': s−1 zeros inserted between pixels → (C, (H−1)s+1, (W−1)s+1),
    i.e. a transposed convolution with a 1×1 kernel of one and stride s.
    """

    type: Literal["upsample2d"] = "upsample2d"
    linear_in_x: ClassVar[bool] = True
    scale_factor: IntOrPair = 2
    mode: Literal["nearest", "zeros"] = "nearest"
    ranks: ClassVar = (3,)
    examples: ClassVar = (({"scale_factor": 2}, (2, 3, 4)),
                          ({"scale_factor": [2, 3], "mode": "zeros"}, (2, 3, 3)))

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        s = ntuple(self.scale_factor, 2)
        if self.mode == "nearest":
            return (in_shape[0], *(n * si for n, si in zip(in_shape[1:], s)))
        return (in_shape[0], *((n - 1) * si + 1 for n, si in zip(in_shape[1:], s)))

    def receptive_field(self, rf, in_shape):
        s = ntuple(self.scale_factor, 2)
        jump = tuple(max(1, j // si) for j, si in zip(rf.jump, s))
        return type(rf)(rf.size, jump, rf.start, self.output_shape(in_shape)[1:])

    def to_onnx(self, g, x, p, in_shape):
        import numpy as np  # lazily: see backend.py
        sh, sw = ntuple(self.scale_factor, 2)
        if self.mode == "nearest":
            scales = g.const([1.0, 1.0, sh, sw], "scales", np.float32)
            return g.op("Resize", x, "", scales, mode="nearest", nearest_mode="floor",
                        coordinate_transformation_mode="asymmetric")
        C = in_shape[0]  # zeros between pixels: a strided depthwise transposed 1×1 of ones
        return g.op("ConvTranspose", x, g.const(np.ones((C, 1, 1, 1)), "ones"), group=C,
                    kernel_shape=[1, 1], strides=[sh, sw])

    def forward(self, p, x, ctx):
        xp = get_array_module(x)
        sh, sw = ntuple(self.scale_factor, 2)
        C, H, W, N = x.shape
        if self.mode == "nearest":
            y = xp.broadcast_to(x[:, :, None, :, None], (C, H, sh, W, sw, N))
            return y.reshape(C, H * sh, W * sw, N), None  # (C, H, sh, W, sw, N) -> (C, sH, sW, N)
        y = xp.zeros((C, (H - 1) * sh + 1, (W - 1) * sw + 1, N), dtype=x.dtype)
        y[:, ::sh, ::sw] = x
        return y, None

    def backward(self, p, cache, gy, need_gx=True):
        if not need_gx:
            return None, {}
        sh, sw = ntuple(self.scale_factor, 2)
        if self.mode == "zeros":
            return gy[:, ::sh, ::sw], {}
        C, H2, W2, N = gy.shape
        return gy.reshape(C, H2 // sh, sh, W2 // sw, sw, N).sum(axis=(2, 4)), {}
