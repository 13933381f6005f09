"""Convolutions of maps of a few pixels as one product with the kernel's Toeplitz matrix.

A convolution is linear in its input: per image, the O·P outputs (P = OH·OW
positions) are T(w) times the C·Q inputs (Q = H·W positions), where block
(p, q) of T(w), an O × C matrix, is the kernel tap that output position p reads
at input position q, or zero where it reads none. T(w) costs O·C·P·Q
multiply-adds per image, im2col O·C·P·KH·KW. So where a map has at most 4/9 as
many pixels as the kernel has taps (``applies``: 2×2 maps under a 3×3 kernel,
VGG's last stage on CIFAR), T(w) multiplies no more than 4/9 of im2col, and
fewer than Winograd, whose 4×4 output tile such a map fills only in part (36
products per map pair and image against T(w)'s 16). It is one large product
instead of many small ones between transforms, and the gradients are two more:
  y = T(w) x,   ∂E/∂x = T(w)ᵀ gy,   ∂E/∂T = gy xᵀ, folded back onto the taps.
(benchmarks/results.md has the per-layer timings that chose this path.)

T(w) is laid out (P, O, Q, C): each block is then a contiguous copy of one tap's
O × C weights (a copy of 1 MB at 512 maps), and the activations are transposed to
position-major order (C, Q, N) → (Q, C, N), a few hundred kilobytes here. The
forward keeps T(w) for the input gradient (16 MB at 512 maps).
"""

from __future__ import annotations

import functools
import math

from .backend import get_array_module, is_numpy
from .parallel import matmul
from .shapes import conv_out_shape

MAX_BYTES = 64 << 20  # larger Toeplitz matrices are not built


@functools.lru_cache(maxsize=64)
def _taps(in_hw, kernel, stride, pads, dilation) -> tuple:
    """((p, q), t) for every output position p that reads input position q, through
    kernel tap t (positions and taps flat, row-major), from index grids."""
    import numpy as np  # lazily: ``cnnrun summary`` imports this module, not NumPy
    (H, W), (KH, KW) = in_hw, kernel
    OH, OW = conv_out_shape(in_hw, kernel, stride, pads, dilation)
    oh, ow, h, w = np.meshgrid(range(OH), range(OW), range(H), range(W), indexing="ij")
    i, ri = np.divmod(h + pads[0][0] - oh * stride[0], dilation[0])  # (OH, OW, H, W)
    j, rj = np.divmod(w + pads[1][0] - ow * stride[1], dilation[1])
    hit = (ri == 0) & (rj == 0) & (0 <= i) & (i < KH) & (0 <= j) & (j < KW)
    p, q, t = (oh * OW + ow)[hit], (h * W + w)[hit], (i * KW + j)[hit]
    return tuple(zip(zip(p.tolist(), q.tolist()), t.tolist()))


def tap_table(in_hw, kernel, stride, pads, dilation) -> dict:
    """{(p, q): t}: output position p reads input position q through kernel tap t;
    pairs that no tap joins are absent."""
    return dict(_taps(tuple(in_hw), tuple(kernel), tuple(stride),
                      tuple(map(tuple, pads)), tuple(dilation)))


def applies(in_hw, kernel, stride, pads, dilation, groups, in_channels, out_channels,
            itemsize, xp=None) -> bool:
    """Whether a convolution runs as one Toeplitz product: ungrouped, on maps of at most
    4/9 as many pixels as the kernel has taps, T(w) no larger than MAX_BYTES, on NumPy
    (no GPU has been lent to measure it there)."""
    Q, taps = math.prod(in_hw), math.prod(kernel)
    P = math.prod(conv_out_shape(in_hw, kernel, stride, pads, dilation))
    return groups == 1 and 9 * Q <= 4 * taps and \
        P * Q * in_channels * out_channels * itemsize <= MAX_BYTES and \
        (xp is None or is_numpy(xp))


class Toeplitz:
    """T(w) of one convolution's weights at one input size, and its three products."""

    def __init__(self, weight, in_hw, stride, pads, dilation):
        xp = self.xp = get_array_module(weight)
        O, C, KH, KW = self.weight_shape = weight.shape
        self.in_hw = in_hw
        self.out_hw = conv_out_shape(in_hw, (KH, KW), stride, pads, dilation)
        self.P, self.Q = math.prod(self.out_hw), math.prod(in_hw)
        self.table = tap_table(in_hw, (KH, KW), stride, pads, dilation)
        taps = xp.ascontiguousarray(weight.reshape(O, C, KH * KW).transpose(2, 0, 1))  # (taps, O, C)
        T = xp.empty((self.P, O, self.Q, C), dtype=weight.dtype)
        for p in range(self.P):
            for q in range(self.Q):
                t = self.table.get((p, q))
                T[p, :, q, :] = 0 if t is None else taps[t]
        self.matrix = T.reshape(self.P * O, self.Q * C)  # (P·O, Q·C)

    def _positions_first(self, a):
        """(maps, positions, N) → (positions·maps, N): the products' operand order."""
        maps, N = a.shape[0], a.shape[-1]
        a = a.reshape(maps, -1, N).transpose(1, 0, 2)  # (positions, maps, N)
        return self.xp.ascontiguousarray(a).reshape(-1, N)

    def _maps_first(self, a, maps, hw):
        """(positions·maps, N) → (maps, *hw, N), the engine layout."""
        N = a.shape[-1]
        a = a.reshape(-1, maps, N).transpose(1, 0, 2)  # (maps, positions, N)
        return self.xp.ascontiguousarray(a).reshape(maps, *hw, N)

    def forward(self, x, bias):
        """y = T(w) x (+ b): (O, OH, OW, N) from x (C, H, W, N)."""
        O = self.weight_shape[0]
        y = self._maps_first(matmul(self.matrix, self._positions_first(x)), O, self.out_hw)
        if bias is not None:
            y += bias.reshape(O, 1, 1, 1)
        return y

    def backward(self, gy, x, need_gx=True, need_params=True):
        """(∂E/∂x, ∂E/∂w), either None where not needed: ∂E/∂x = T(w)ᵀ gy (C, H, W, N) and
        ∂E/∂T = gy xᵀ (P·O × Q·C) with each block added onto the tap it came from. gy is
        put in position-major order once, for both."""
        gq = self._positions_first(gy)  # (P·O, N)
        gx = self._maps_first(matmul(self.matrix.T, gq), self.weight_shape[1], self.in_hw) \
            if need_gx else None
        gW = self._fold(matmul(gq, self._positions_first(x).T)) if need_params else None
        return gx, gW

    def _fold(self, gT):
        """∂E/∂T (P·O × Q·C) → ∂E/∂w (O, C, KH, KW): the blocks summed per tap."""
        xp, (O, C, KH, KW) = self.xp, self.weight_shape
        gT = gT.reshape(self.P, O, self.Q, C)
        g_taps = xp.empty((KH * KW, O, C), dtype=gT.dtype)
        blocks = {}  # tap → the (p, q) blocks it appears in
        for pq, t in self.table.items():
            blocks.setdefault(t, []).append(gT[pq[0], :, pq[1], :])
        for t in range(KH * KW):  # each tap's sum written once (no zeroing pass)
            here = blocks.get(t, [])
            if len(here) < 2:
                g_taps[t] = here[0] if here else 0
                continue
            xp.add(here[0], here[1], out=g_taps[t])
            for block in here[2:]:
                g_taps[t] += block
        return xp.ascontiguousarray(g_taps.transpose(1, 2, 0)).reshape(O, C, KH, KW)
