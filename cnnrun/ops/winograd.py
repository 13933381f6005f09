"""3×3 convolutions at stride 1 by Winograd's minimal filtering, F(4×4, 3×3) (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2015), as five matrix products.

Each 4×4 block of outputs comes from the 6×6 block of input around it:
y = Aᵀ[(G w Gᵀ) ⊙ (Bᵀ d B)]A per channel, summed over the channels. That is 36
multiplications per 16 outputs where a direct convolution does 144 (4× fewer),
and the transformed input is 36/16 = 2.25× the input. Every transform is a
product with a Kronecker matrix (Bᵀ⊗Bᵀ: 36 × 36, G⊗G: 36 × 9, Aᵀ⊗Aᵀ: 16 × 36)
on position-major operands, so the forward is
  d = the 6×6 tiles, (36, C·tiles)    one strided copy of the padded input
  V = (Bᵀ⊗Bᵀ) d,  U = (G⊗G) w          (36, C, tiles), (36, O, C)
  M[ξ] = U[ξ] V[ξ]                     36 products (O × C)·(C × tiles)
  y = (Aᵀ⊗Aᵀ) M                        (16, O, tiles), then scattered into place
and the gradients stay in the transformed domain:
  ∂E/∂x is this convolution of gy with the transposed, flipped kernel
    (``conv_grad``'s adjoint at stride 1),
  ∂E/∂U[ξ] = ∂E/∂M[ξ] · V[ξ]ᵀ with ∂E/∂M = (Aᵀ⊗Aᵀ)ᵀ gy, and ∂E/∂w = (G⊗G)ᵀ ∂E/∂U.
Every product goes through ``parallel.matmul``, split over the workers in a pass
that works in bands.

Where the maps are few, the transforms (memory-bound) cost more than the products save,
so only convolutions with at least WINOGRAD_MIN_CHANNELS maps in and out, on NumPy, take
this path (``applies``; the measurements that set the threshold are in
benchmarks/results.md). CuPy keeps im2col: no GPU has been lent to measure this path there.
Exactness: the transforms' entries (4, −5, ±1/6, 1/24 …) are not all exact
in binary, so float32 results differ from the direct sum by about 1e-5 relative
(1e-13 in float64; the tests bound both).
"""

from __future__ import annotations

import functools

from .backend import get_array_module, is_numpy
from .parallel import matmul
from .shapes import conv_out_shape
from .spatial import pad_spatial, strided_view

WINOGRAD_MIN_CHANNELS = 64
CHUNK_BYTES = 64 << 20  # transformed input per chunk of images, about


def applies(kernel, stride, dilation, groups, in_channels, out_channels, xp=None) -> bool:
    """Whether a convolution runs as F(4×4, 3×3): a 3×3 kernel at stride 1, undilated,
    ungrouped, with at least WINOGRAD_MIN_CHANNELS maps in and out, on NumPy."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and \
        tuple(dilation) == (1, 1) and groups == 1 and \
        min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS and \
        (xp is None or is_numpy(xp))


_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


@functools.lru_cache(maxsize=8)
def _kron(name, dtype):
    """Bᵀ⊗Bᵀ, G⊗G or Aᵀ⊗Aᵀ as a NumPy array of dtype (cached: built in float64, then cast)."""
    import numpy as np  # lazily: see backend.py
    m = np.asarray({"B": _BT, "G": _G, "A": _AT}[name], dtype=np.float64)
    return np.kron(m, m).astype(dtype)


def _matrix(xp, name, dtype):
    m = _kron(name, dtype)  # shared and cached: never written to
    return m if is_numpy(xp) else xp.asarray(m)


def transform_kernel(w):
    """U = G w Gᵀ per (output, input) map pair: (O, C, 3, 3) → (36, O, C)."""
    xp = get_array_module(w)
    O, C = w.shape[:2]
    return matmul(_matrix(xp, "G", w.dtype), w.reshape(O * C, 9).T).reshape(36, O, C)


def kernel_gradient(gU):
    """∂E/∂w = Gᵀ (∂E/∂U) G, the adjoint of transform_kernel: (36, O, C) → (O, C, 3, 3)."""
    xp = get_array_module(gU)
    _, O, C = gU.shape
    gw = matmul(_matrix(xp, "G", gU.dtype).T, gU.reshape(36, O * C))  # (9, O·C)
    return xp.ascontiguousarray(gw.T).reshape(O, C, 3, 3)


class Tiles:
    """The 4×4 output tiles of x (C, H, W, N) under a 3×3 kernel with ``pads``; the input
    is padded further where the output is not a multiple of 4 (outputs cropped, output
    gradients padded with zeros). Images go in chunks whose transformed input is about
    CHUNK_BYTES (all of them for CIFAR's VGG-11 and ResNet-20 at batch 128: a 224×224
    VGG-16 layer would otherwise transform 0.9 GB at batch 32)."""

    def __init__(self, x, pads):
        (pt, pb), (pl, pr) = pads
        C, H, W, N = x.shape
        self.out_hw = OH, OW = conv_out_shape((H, W), (3, 3), (1, 1), pads, (1, 1))
        self.grid = TH, TW = -(-OH // 4), -(-OW // 4)
        self.xp = get_array_module(x)
        self.xpad = pad_spatial(x, ((pt, pb + 4 * TH - OH), (pl, pr + 4 * TW - OW)))
        per_image = 36 * C * TH * TW * x.dtype.itemsize
        step = max(1, CHUNK_BYTES // per_image)
        self.chunks = [slice(n, min(n + step, N)) for n in range(0, N, step)]

    def transformed_input(self, ns):
        """V = (Bᵀ⊗Bᵀ) d for images ns: (36, C, TH·TW·n)."""
        xpad = self.xpad[..., ns]
        C, _, _, n = xpad.shape
        (TH, TW), (sC, sH, sW, sN) = self.grid, xpad.strides
        view = strided_view(xpad, (6, 6, C, TH, TW, n),
                            (sH, sW, sC, 4 * sH, 4 * sW, sN))  # d[a, b, c, th, tw, n]
        d = self.xp.ascontiguousarray(view).reshape(36, -1)  # (36, C·TH·TW·n): one copy
        return matmul(_matrix(self.xp, "B", d.dtype), d).reshape(36, C, -1)

    def scatter(self, Y, O, n):
        """(16, O, TH·TW·n) outputs by tile position → (O, 4·TH, 4·TW, n)."""
        TH, TW = self.grid
        y = Y.reshape(4, 4, O, TH, TW, n).transpose(2, 3, 0, 4, 1, 5)  # (O, TH, 4, TW, 4, n)
        return self.xp.ascontiguousarray(y).reshape(O, 4 * TH, 4 * TW, n)

    def crop(self, y):
        OH, OW = self.out_hw
        return y if y.shape[1:3] == (OH, OW) else self.xp.ascontiguousarray(y[:, :OH, :OW])

    def gather(self, gy, ns):
        """The adjoint of scatter and crop, for images ns: gy (O, OH, OW, N) →
        (16, O·TH·TW·n)."""
        (TH, TW), (OH, OW) = self.grid, self.out_hw
        gy = gy[..., ns]
        if (OH, OW) != (4 * TH, 4 * TW):
            gy = pad_spatial(gy, ((0, 4 * TH - OH), (0, 4 * TW - OW)))
        O, _, _, n = gy.shape
        g = gy.reshape(O, TH, 4, TW, 4, n).transpose(2, 4, 0, 1, 3, 5)  # (4, 4, O, TH, TW, n)
        return self.xp.ascontiguousarray(g).reshape(16, -1)


def conv(x, U, bias, pads):
    """y = w ⋆ x (+ b) at stride 1, from U = transform_kernel(w): (O, OH, OW, N)."""
    tiles = Tiles(x, pads)
    xp, O = tiles.xp, U.shape[1]
    parts = []
    for ns in tiles.chunks:
        M = matmul(U, tiles.transformed_input(ns))  # (36, O, tiles): the 36 products
        Y = matmul(_matrix(xp, "A", M.dtype), M.reshape(36, -1))  # (16, O·tiles)
        parts.append(tiles.scatter(Y, O, ns.stop - ns.start))
    y = tiles.crop(parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=3))
    if bias is not None:
        y += bias.reshape(O, 1, 1, 1)
    return y


def grad_kernel(gy, x, pads):
    """∂E/∂w of conv, (O, C, 3, 3): (G⊗G)ᵀ Σ_tiles [(Aᵀ⊗Aᵀ)ᵀ gy] · Vᵀ."""
    tiles = Tiles(x, pads)
    xp, O = tiles.xp, gy.shape[0]
    gU = None
    for ns in tiles.chunks:
        gM = matmul(_matrix(xp, "A", gy.dtype).T, tiles.gather(gy, ns)).reshape(36, O, -1)
        part = matmul(gM, tiles.transformed_input(ns).swapaxes(1, 2))  # (36, O, C)
        gU = part if gU is None else gU + part
    return kernel_gradient(gU)
