"""Learned combinations of feature maps (Bouvrie, "Notes on CNNs", §3.3)."""

import math
from typing import ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from ..ops.backend import get_array_module
from ..ops.conv import apply_weight
from ..ops.conv_grad import conv_backward, conv_forward_saving, conv_grad_input
from ..ops.rows import channel_sums
from ..ops.softmax import softmax, softmax_backward
from ..registry import LAYERS
from .base import ParamLayer, ShapeError


class Sparsity(BaseModel):
    """A penalty on the mixing weights α, added to the loss.

    kind 'entropy': λ·Σ_j H(α_·j) = −λ Σ_j Σ_i α_ij log α_ij. It is smallest when each output
    map reads one input map, so a larger λ concentrates α on fewer maps.
    kind 'l1': λ·Σ|α_ij|, as the notes write it (Eq. 11–14). Because each α_·j is a softmax,
    its entries are positive and sum to one, so this penalty is the constant λ·O and its
    gradient (the notes' Eq. 14) is identically zero: it does nothing. It is kept so that the
    notes can be followed literally, and the tests check that its gradient is zero.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    kind: Literal["entropy", "l1"] = "entropy"
    strength: float = Field(0.01, ge=0.0, description="λ")


@LAYERS.register("combine_maps")
class CombineMaps(ParamLayer):
    """y_j = Σ_i α_ij (x_i ∗ k_i) + b_j, with α_·j = softmax_i(c_·j).

    Input (C, H, W) → (out_channels, OH, OW). One K×K kernel per input map, shared by every
    output map (parameter ``kernel``, (C, 1, K, K)); free mixing weights ``mix`` c (O, C);
    bias (O,). Gradients: ∂E/∂α_ij = Σ_uv δ_j ∘ (x_i ∗ k_i), and through the softmax
    ∂E/∂c_ij = α_ij (∂E/∂α_ij − Σ_k α_kj ∂E/∂α_kj). Apply the activation f after this layer.
    ``sparsity`` adds a penalty on α to the loss (see Sparsity).
    """

    type: Literal["combine_maps"] = "combine_maps"
    out_channels: PositiveInt
    kernel_size: PositiveInt = 3
    padding: int = Field(0, ge=0)
    bias: bool = True
    sparsity: Optional[Sparsity] = None
    ranks: ClassVar = (3,)
    examples: ClassVar = (
        ({"out_channels": 3, "kernel_size": 3, "padding": 1}, (4, 5, 5)),
        ({"out_channels": 2, "kernel_size": 2, "bias": False,
          "sparsity": {"kind": "entropy", "strength": 0.3}}, (3, 4, 4)),
    )

    def _geo(self):
        p = self.padding
        return (1, 1), ((p, p), (p, p)), (1, 1)

    def output_shape(self, in_shape):
        self.check_rank(in_shape)
        out = [n + 2 * self.padding - self.kernel_size + 1 for n in in_shape[1:]]
        if min(out) < 1:
            raise ShapeError(f"{self.label()}: kernel {self.kernel_size} does not fit input shape "
                             f"{tuple(in_shape)}")
        return (self.out_channels, *out)

    def receptive_field(self, rf, in_shape):
        k = (self.kernel_size,) * 2
        return rf.window(k, (1, 1), (self.padding,) * 2, grid=self.output_shape(in_shape)[1:])

    def param_shapes(self, in_shape):
        C, K = in_shape[0], self.kernel_size
        shapes = {"kernel": (C, 1, K, K), "mix": (self.out_channels, C)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def default_param(self, pname, shape, rng):
        if pname == "kernel":
            return rng.uniform(-1, 1, shape) / math.sqrt(shape[2] * shape[3])
        import numpy as np  # lazily: see backend.py
        return np.zeros(shape)  # mix: uniform α to start

    def macs(self, in_shape):
        out = self.output_shape(in_shape)
        C = in_shape[0]
        return math.prod(out[1:]) * C * (self.kernel_size ** 2 + self.out_channels)

    def to_onnx(self, g, x, p, in_shape):
        C, K, pad = in_shape[0], self.kernel_size, self.padding
        z = g.op("Conv", x, g.const(p["kernel"], "kernel"), group=C, kernel_shape=[K, K],
                 pads=[pad] * 4)  # each map filtered on its own
        import numpy as np  # lazily: see backend.py
        alpha = softmax(np.asarray(p["mix"], dtype=np.float64), axis=1)  # (O, C), fixed now
        mix = [z, g.const(alpha[:, :, None, None], "mix")] + \
            ([g.const(p["bias"], "bias")] if self.bias else [])
        return g.op("Conv", *mix, kernel_shape=[1, 1])  # y_o = Σ_c α_oc z_c + b_o

    def forward(self, p, x, ctx):
        C = x.shape[0]
        stride, pads, dilation = self._geo()
        z, saved = conv_forward_saving(x, p["kernel"], None, stride, pads, dilation, groups=C)
        alpha = softmax(p["mix"], axis=1)  # (O, C): each row mixes C maps
        _, OH, OW, N = z.shape
        y = (alpha @ z.reshape(C, -1)).reshape(self.out_channels, OH, OW, N)  # (O, OH, OW, N)
        if self.bias:
            y += p["bias"][:, None, None, None]
        return y, (z, saved, alpha)

    def backward(self, p, cache, gy, need_gx=True):
        z, saved, alpha = cache
        C = z.shape[0]
        gy2 = gy.reshape(self.out_channels, -1)  # (O, OH·OW·N)
        gz = (alpha.T @ gy2).reshape(z.shape)
        gx, gk, _ = conv_backward(gz, p["kernel"], saved, need_gx, False,
                                  need_params=self.trainable)
        if not self.trainable:
            return gx, {}
        g_alpha = gy2 @ z.reshape(C, -1).T  # (O, C): Σ δ_j ∘ z_i
        grads = {"kernel": gk, "mix": softmax_backward(alpha, g_alpha, axis=1)}
        if self.bias:
            grads["bias"] = channel_sums(gy)
        return gx, grads

    def r_forward(self, p, v, rx, cache, ctx):
        """R{z} = k ∗ R{x} + V_k ∗ x, R{α} = α ∘ (V_c − Σ_i α V_c) (the softmax's R),
        R{y} = R{α}·z + α·R{z} + V_b."""
        z, saved, alpha = cache
        xp, C = get_array_module(rx), rx.shape[0]
        stride, pads, dilation = self._geo()
        rz, rsaved = conv_forward_saving(rx, p["kernel"], None, stride, pads, dilation, groups=C)
        if "kernel" in v:
            rz = rz + apply_weight(saved.patches(), v["kernel"], None, C)
        ralpha = alpha * (v["mix"] - (alpha * v["mix"]).sum(axis=1, keepdims=True)) \
            if "mix" in v else xp.zeros_like(alpha)
        ry = ralpha @ z.reshape(C, -1) + alpha @ rz.reshape(C, -1)  # (O, OH·OW·N)
        ry = ry.reshape(self.out_channels, *z.shape[1:])
        if self.bias and "bias" in v:
            ry = ry + v["bias"][:, None, None, None]
        return ry, (rz, rsaved, ralpha)

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        (z, saved, alpha), (rz, rsaved, ralpha) = cache, rcache
        C, O = z.shape[0], self.out_channels
        gy2, rgy2 = gy.reshape(O, -1), rgy.reshape(O, -1)  # (O, OH·OW·N)
        gz = (alpha.T @ gy2).reshape(z.shape)
        rgz = (ralpha.T @ gy2 + alpha.T @ rgy2).reshape(z.shape)
        rgx, rgk, _ = conv_backward(rgz, p["kernel"], saved, True, False,
                                    need_params=self.trainable)
        if "kernel" in v:  # the plain adjoint: a path's saved plan holds the forward's kernel
            stride, pads, dilation = self._geo()
            rgx = rgx + conv_grad_input(gz, v["kernel"], saved.in_hw, stride, pads, dilation, C)
        if not self.trainable:
            return rgx, {}
        rgk = rgk + conv_backward(gz, p["kernel"], rsaved, False, False)[1]  # gz against R{x}
        z2, rz2 = z.reshape(C, -1), rz.reshape(C, -1)
        g_alpha, rg_alpha = gy2 @ z2.T, rgy2 @ z2.T + gy2 @ rz2.T  # (O, C)
        s = (alpha * g_alpha).sum(axis=1, keepdims=True)
        rs = (ralpha * g_alpha + alpha * rg_alpha).sum(axis=1, keepdims=True)
        grads = {"kernel": rgk, "mix": ralpha * (g_alpha - s) + alpha * (rg_alpha - rs)}
        if self.bias:
            grads["bias"] = channel_sums(rgy)
        return rgx, grads

    def penalty(self, p):
        """(value, {param: gradient}) of the sparsity penalty, or None."""
        if self.sparsity is None or not self.trainable:
            return None
        xp = get_array_module(p["mix"])
        alpha = softmax(p["mix"], axis=1)
        lam = self.sparsity.strength
        if self.sparsity.kind == "l1":  # constant: Σ_i α_ij = 1 for every j
            g_alpha = lam * xp.sign(alpha)
            return float(lam * xp.abs(alpha).sum()), {"mix": softmax_backward(alpha, g_alpha, axis=1)}
        logs = xp.log(xp.maximum(alpha, 1e-30))
        g_alpha = -lam * (logs + 1)
        return float(-lam * (alpha * logs).sum()), {"mix": softmax_backward(alpha, g_alpha, axis=1)}
