"""Convolution layers: conv2d and conv1d (cross-correlation, PyTorch's convention)."""

import math
from typing import ClassVar, Literal, Optional, Union

from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt

from ..ops.backend import get_array_module
from ..ops.conv import apply_weight, conv_forward, conv_grad_weight
from ..ops.conv_grad import algorithm, conv_backward, conv_forward_saving, conv_grad_input
from ..ops.shapes import conv_out_size, ntuple, same_padding
from ..registry import LAYERS
from .base import IntOrPair, ParamLayer, ShapeError

PadSpec = Union[NonNegativeInt, tuple[NonNegativeInt, NonNegativeInt], Literal["same", "valid"]]


class ConvNd(ParamLayer):
    """Shared rules of the sliding-window convolutions; ``nd`` spatial axes.

    flip_kernel: true computes true convolution (the kernel rotated 180°, as
    MATLAB's conv2) instead of cross-correlation; parameters keep their layout.
    """

    out_channels: PositiveInt
    kernel_size: IntOrPair
    stride: IntOrPair = 1
    padding: PadSpec = 0
    dilation: IntOrPair = 1
    groups: PositiveInt = 1
    bias: bool = True
    flip_kernel: bool = False
    connections_table: Optional[list[list[NonNegativeInt]]] = Field(
        None, alias="connections",
        description="input maps read by each output map (LeNet-5's C3); groups must be 1")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    nd: ClassVar[int] = 2

    # ---- geometry ---------------------------------------------------------
    def kernel(self):
        return ntuple(self.kernel_size, self.nd)

    def strides(self):
        return ntuple(self.stride, self.nd)

    def dilations(self):
        return ntuple(self.dilation, self.nd)

    def pads(self) -> tuple[tuple[int, int], ...]:
        """(before, after) per spatial axis."""
        if self.padding == "valid":
            return ((0, 0),) * self.nd
        if self.padding == "same":
            return tuple(same_padding(k, d) for k, d in zip(self.kernel(), self.dilations()))
        return tuple((p, p) for p in ntuple(self.padding, self.nd))

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        C, spatial = in_shape[0], in_shape[1:]
        for what, n in (("input channels", C), ("out_channels", self.out_channels)):
            if n % self.groups:
                raise ShapeError(f"{self.label()}: {what} ({n}) must be divisible by "
                                 f"groups ({self.groups})")
        self._check_table(C)
        if self.padding == "same" and any(s != 1 for s in self.strides()):
            raise ShapeError(f"{self.label()}: padding 'same' needs stride 1 (as in PyTorch)")
        out = tuple(conv_out_size(n, k, s, p, d) for n, k, s, p, d in
                    zip(spatial, self.kernel(), self.strides(), self.pads(), self.dilations()))
        if min(out) < 1:
            raise ShapeError(f"{self.label()}: kernel {'×'.join(map(str, self.kernel()))} "
                             f"(dilation {self.dilation}) does not fit its padded input; "
                             f"input shape {tuple(in_shape)}, padding {self.padding}")
        return (self.out_channels, *out)

    # ---- connection table: output map j reads only the input maps table[j] ------
    def _check_table(self, C):
        t = self.connections_table
        if t is None:
            return
        if self.groups != 1 or len(t) != self.out_channels or any(i >= C for row in t for i in row):
            raise ShapeError(f"{self.label()}: connections must list, for each of the "
                             f"{self.out_channels} output maps, input maps below {C} "
                             f"(with groups 1)")

    def mask(self, in_channels, xp, dtype):
        """(O, C, 1, ...) ones where an output map reads an input map, else zeros."""
        m = xp.zeros((self.out_channels, in_channels) + (1,) * self.nd, dtype=dtype)
        for j, row in enumerate(self.connections_table):
            m[j, row] = 1.0
        return m

    def _links(self, in_shape) -> int:
        """Input maps summed per output map, over all output maps."""
        if self.connections_table is None:
            return self.out_channels * (in_shape[0] // self.groups)
        return sum(len(row) for row in self.connections_table)

    def n_params(self, in_shape):
        return self._links(in_shape) * math.prod(self.kernel()) + \
            (self.out_channels if self.bias else 0)

    def init_state(self, in_shape, rng):
        state = super().init_state(in_shape, rng)
        if self.connections_table is not None:  # unconnected kernels are zero and stay zero
            w = state["weight"]
            w *= self.mask(in_shape[0], get_array_module(w), w.dtype)
        return state

    def receptive_field(self, rf, in_shape):
        return rf.window(self.kernel(), self.strides(), [p[0] for p in self.pads()],
                         self.dilations(), grid=self.output_shape(in_shape)[1:])

    def param_shapes(self, in_shape):
        shapes = {"weight": (self.out_channels, in_shape[0] // self.groups, *self.kernel())}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def macs(self, in_shape):
        out = self.output_shape(in_shape)
        return math.prod(out[1:]) * self._links(in_shape) * math.prod(self.kernel())

    def kept_elements(self, in_shape):
        """The padded input, whose columns give ∂E/∂W; nothing where both gradients come
        from gy's columns, Winograd's tiles or a Toeplitz product (``ops.conv_grad``'s
        ``algorithm``, the forward's own rule, for float32): x itself is kept, the previous
        output. (A Toeplitz product also keeps its matrix, which is the weights' size, not
        the batch's.)"""
        (C, *in_hw), pads = in_shape, self.pads()
        path = algorithm(in_hw, self.kernel(), self.strides(), pads, self.dilations(),
                         self.groups, C, self.out_channels, itemsize=4)
        if path != "patches":
            return 0
        return C * math.prod(n + a + b for n, (a, b) in zip(in_hw, pads))

    # ---- computation (the 1-D case runs as a 2-D one of height 1) ------------
    def _as2d(self):
        if self.nd == 2:
            return self.strides(), self.pads(), self.dilations()
        return (1, *self.strides()), ((0, 0), *self.pads()), (1, *self.dilations())

    def _weight2d(self, w):
        if self.connections_table is not None:
            w = w * self.mask(w.shape[1], get_array_module(w), w.dtype)
        w = w[..., ::-1, ::-1] if (self.flip_kernel and self.nd == 2) else w
        if self.nd == 1:
            w = (w[..., ::-1] if self.flip_kernel else w)[:, :, None, :]  # (O, C/G, 1, K)
        return w

    def to_onnx(self, g, x, p, in_shape):
        w = self._weight2d(p["weight"])  # the effective kernel: table mask and flip applied
        w = w if self.nd == 2 else w[:, :, 0, :]  # (O, C/G, 1, K) -> (O, C/G, K)
        pads = self.pads()
        inputs = [x, g.const(w, "weight")] + ([g.const(p["bias"], "bias")] if self.bias else [])
        return g.op("Conv", *inputs, kernel_shape=list(self.kernel()), strides=list(self.strides()),
                    dilations=list(self.dilations()), group=self.groups,
                    pads=[a for a, _ in pads] + [b for _, b in pads])

    def forward(self, p, x, ctx):
        x4 = x if self.nd == 2 else x[:, None]  # (C, L, N) -> (C, 1, L, N)
        stride, pads, dilation = self._as2d()
        y, saved = conv_forward_saving(x4, self._weight2d(p["weight"]), p.get("bias"), stride,
                                       pads, dilation, self.groups)
        y = y if self.nd == 2 else y[:, 0]  # (O, 1, OL, N) -> (O, OL, N)
        return y, saved

    def backward(self, p, cache, gy, need_gx=True):
        gy4 = gy if self.nd == 2 else gy[:, None]
        gx, gW, gb = conv_backward(gy4, self._weight2d(p["weight"]), cache, need_gx, self.bias,
                                   need_params=self.trainable)
        if gx is not None and self.nd == 1:
            gx = gx[:, 0]  # (C, 1, L, N) -> (C, L, N)
        return gx, (self._param_grads(gW, gb) if self.trainable else {})

    def _param_grads(self, gW, gb) -> dict:
        """A gradient of the effective 2-D weight, mapped back to the parameter's layout."""
        if self.nd == 1:
            gW = gW[:, :, 0, :]  # (O, C/G, 1, K) -> (O, C/G, K)
        if self.flip_kernel:
            gW = gW[..., ::-1, ::-1] if self.nd == 2 else gW[..., ::-1]
        if self.connections_table is not None:
            gW = gW * self.mask(gW.shape[1], get_array_module(gW), gW.dtype)
        grads = {"weight": gW}
        if self.bias:
            grads["bias"] = gb
        return grads

    # ---- R-operator: conv is bilinear in (x, W) ----------------------------------
    def r_forward(self, p, v, rx, cache, ctx):
        patches = cache.patches()
        rx4 = rx if self.nd == 2 else rx[:, None]
        stride, pads, dilation = self._as2d()
        ry, rpatches = conv_forward(rx4, self._weight2d(p["weight"]), None, stride, pads,
                                    dilation, self.groups)  # W ⋆ R{x}
        if "weight" in v:  # + V ⋆ x, from the patches kept by the forward pass
            ry = ry + apply_weight(patches, self._weight2d(v["weight"]), None, self.groups)
        if self.bias and "bias" in v:
            ry = ry + v["bias"][:, None, None, None]
        return (ry if self.nd == 2 else ry[:, 0]), rpatches

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        patches, in_hw = cache.patches(), cache.in_hw
        rpatches = rcache
        gy4, rgy4 = (gy, rgy) if self.nd == 2 else (gy[:, None], rgy[:, None])
        stride, pads, dilation = self._as2d()
        w2 = self._weight2d(p["weight"])
        rgx = conv_grad_input(rgy4, w2, in_hw, stride, pads, dilation, self.groups)
        if "weight" in v:
            rgx = rgx + conv_grad_input(gy4, self._weight2d(v["weight"]), in_hw, stride, pads,
                                        dilation, self.groups)
        rgx = rgx if self.nd == 2 else rgx[:, 0]
        if not self.trainable:
            return rgx, {}
        rgW = conv_grad_weight(rgy4, patches, w2.shape, self.groups) + \
            conv_grad_weight(gy4, rpatches, w2.shape, self.groups)
        return rgx, self._param_grads(rgW, rgy.sum(axis=tuple(range(1, rgy.ndim))))


@LAYERS.register("conv2d")
class Conv2d(ConvNd):
    """2-D convolution (cross-correlation): y[o] = b[o] + Σ_c W[o, c] ⋆ x[c].

    Input (C, H, W); output (out_channels, OH, OW) with
    OH = ⌊(H + 2p − d(k−1) − 1)/s⌋ + 1. Weight (O, C/groups, KH, KW), bias (O,).
    groups = C = out_channels/m gives a depthwise convolution; padding 'same'
    keeps the size at stride 1 (the odd pixel goes after, as in PyTorch).
    """

    type: Literal["conv2d"] = "conv2d"
    ranks: ClassVar = (3,)
    examples: ClassVar = (
        ({"out_channels": 3, "kernel_size": 3, "padding": 1}, (2, 5, 6)),
        ({"out_channels": 4, "kernel_size": [2, 3], "stride": [2, 1], "dilation": [1, 2],
          "padding": [1, 0]}, (2, 7, 8)),
        ({"out_channels": 4, "kernel_size": 3, "groups": 2, "bias": False}, (4, 5, 5)),
        ({"out_channels": 6, "kernel_size": 3, "groups": 3, "padding": "same"}, (3, 4, 5)),
        ({"out_channels": 2, "kernel_size": 2, "flip_kernel": True}, (2, 4, 4)),
        ({"out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1}, (1, 6, 6)),
        ({"out_channels": 3, "kernel_size": 2, "connections": [[0], [1, 2], [0, 2]]}, (3, 4, 4)),
    )


@LAYERS.register("conv1d")
class Conv1d(ConvNd):
    """1-D convolution over (C, L): the 2-D rule on one axis (Wu's notes: it works the same).

    Weight (O, C/groups, K), bias (O,); output (out_channels, OL).
    """

    type: Literal["conv1d"] = "conv1d"
    kernel_size: PositiveInt
    stride: PositiveInt = 1
    padding: Union[NonNegativeInt, Literal["same", "valid"]] = 0
    dilation: PositiveInt = 1
    nd: ClassVar[int] = 1
    ranks: ClassVar = (2,)
    examples: ClassVar = (
        ({"out_channels": 3, "kernel_size": 3, "padding": 1}, (2, 7)),
        ({"out_channels": 4, "kernel_size": 2, "stride": 2, "dilation": 2, "groups": 2},
         (2, 9)),
    )
