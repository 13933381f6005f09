"""3×3 convolutions at stride 1 by Winograd's minimal filtering, F(2×2, 3×3) (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2015).

Each 2×2 block of outputs is computed from the 4×4 block of input around it:
y = Aᵀ[(G w Gᵀ) ⊙ (Bᵀ d B)]A per channel, summed over the channels. Summed over
channels, the element-wise product is 16 matrix products, one per position ξ of
the 4×4 transformed tile: M[ξ] = U[ξ] (O × C) · V[ξ] (C × tiles). They do 16
multiplications where a direct convolution does 36 (2.25× fewer); the
transforms are additions (and halvings, in G) on strided views of the
batch-last layout, where every operand is a run of N contiguous images.

Where the channels are many the products dominate and the saving is real. In
VGG-11's training step at batch 128 (``cnnrun bench --profile``), the 256-map
8×8 forward took 25 ms instead of im2col's 44, the 512-map 4×4 one 24 instead
of 44, and the step 473 ms instead of 662. With fewer maps the transforms,
memory-bound passes, cost more than they save: ResNet-20 trained at 430 images/s
with every stage on this path, 507 with the 32- and 64-map stages, 540 with only
the 64-map one (medians of 4 interleaved rounds). So only convolutions with at least
WINOGRAD_MIN_CHANNELS maps in and out, on NumPy, take it (``applies``). CuPy keeps
im2col: no GPU has been lent to measure this path there. Exactness: the transforms' entries are 0, ±1 and ±½, so
results differ from the direct sum only by rounding (about 1e-6 relative in
float32, 1e-15 in float64; the tests compare both).

All three gradients stay in the transformed domain:
  ∂E/∂x is this convolution of gy with the transposed, flipped kernel
    (``conv_grad``'s adjoint at stride 1),
  ∂E/∂U[ξ] = ∂E/∂M[ξ] · V[ξ]ᵀ with ∂E/∂M = A gy Aᵀ per 2×2 output block, and
  ∂E/∂w = Gᵀ (∂E/∂U) G.
Work goes in bands of tile rows (or of images, where the tile rows are few),
a few megabytes each so a band's tiles stay in cache between the transform,
the products and the inverse transform, on all cores (``parallel.map_bands``).
"""

from __future__ import annotations

from ..allocator import empty_apart
from ..backend import get_array_module, is_numpy
from . import parallel  # num_workers is read at call time (tests set it)
from .spatial import pad_spatial

WINOGRAD_MIN_CHANNELS = 64
BAND_BYTES = 4 << 20  # a band's transformed input, about


def applies(kernel, stride, dilation, groups, in_channels, out_channels, xp=None) -> bool:
    """Whether a convolution runs as F(2×2, 3×3): a 3×3 kernel at stride 1, undilated,
    ungrouped, with at least WINOGRAD_MIN_CHANNELS maps in and out, on NumPy."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and \
        tuple(dilation) == (1, 1) and groups == 1 and \
        min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS and \
        (xp is None or is_numpy(xp))


def _kernel_transform(xp, dtype):
    """G ⊗ G (16 × 9), G the kernel transform (4 × 3): row 4a + b, column 3i + j holds
    G[a, i]·G[b, j], so U = G w Gᵀ is one product with the flattened kernels. (A batch of
    O·C products of 4×3 by 3×3 matrices took 40 ms at 512 maps; this takes 2.) Its
    entries 0, ±1, ±½ and ±¼ are exact in any float type."""
    G = xp.asarray([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], dtype=dtype)
    return xp.kron(G, G)


def transform_kernel(w):
    """U = G w Gᵀ for every (output, input) map pair: (O, C, 3, 3) → (16, O, C)."""
    xp = get_array_module(w)
    O, C = w.shape[:2]
    # (16, O·C): split over the workers where large (memory-bound: 512 maps 1.65 → 0.95 ms)
    U = parallel.matmul(_kernel_transform(xp, w.dtype), w.reshape(O * C, 9).T)
    return U.reshape(16, O, C)


def kernel_gradient(gU):
    """∂E/∂w = Gᵀ (∂E/∂U) G, the adjoint of transform_kernel: (16, O, C) → (O, C, 3, 3)."""
    xp = get_array_module(gU)
    _, O, C = gU.shape
    gw = gU.reshape(16, O * C).T @ _kernel_transform(xp, gU.dtype)  # (O·C, 9)
    return gw.reshape(O, C, 3, 3)


class Tiling:
    """The 2×2 output tiles of a padded input (C, Hp, Wp, N) and their bands.

    The input is padded by one more row (column) where the output height (width) is
    odd, so every tile is whole; winograd_conv then crops the extra output row and
    column, and winograd_grad_kernel pads gy with zeros to match."""

    def __init__(self, x, pads):
        (pt, pb), (pl, pr) = pads
        C, H, W, N = x.shape
        self.out_hw = OH, OW = H + pt + pb - 2, W + pl + pr - 2
        self.tiles = TH, TW = (OH + 1) // 2, (OW + 1) // 2
        self.xpad = pad_spatial(x, ((pt, pb + OH % 2), (pl, pr + OW % 2)))
        self.xp = get_array_module(x)
        per_row = 16 * C * TW * N * x.dtype.itemsize  # bytes of one tile row, transformed
        rows = max(1, min(TH, BAND_BYTES // per_row))
        row_bands = [(t, min(t + rows, TH)) for t in range(0, TH, rows)]
        k = parallel.num_workers() if is_numpy(self.xp) else 1
        # Few tile rows (VGG's 4×4 and 2×2 maps): split the images too, to feed every core
        parts = 1 if len(row_bands) >= k else min(N, max(k, -(-rows * per_row // BAND_BYTES)))
        step = -(-N // parts)
        self.bands = [(t0, t1, slice(n, min(n + step, N)))
                      for t0, t1 in row_bands for n in range(0, N, step)]

    def input_tiles(self, band, buf):
        """Bᵀ d B for the band's tiles: (16, C, T·TW·n), written into buf."""
        t0, t1, ns = band
        x = self.xpad[:, 2 * t0:2 * t1 + 2, :, ns]
        C, _, Wp, n = x.shape
        T, TW = _rows_and_images(band)[0], self.tiles[1]
        rows = buf[:4 * C * T * Wp * n].reshape(4, C, T, Wp, n)  # a prefix of the buffer
        _rows_BT(self.xp, [x[:, i:i + 2 * T:2] for i in range(4)], rows)  # Bᵀ d
        tiles = buf[rows.size:rows.size + 16 * C * T * TW * n].reshape(4, 4, C, T, TW, n)
        for a in range(4):  # (Bᵀ d) B
            _rows_BT(self.xp, [rows[a][:, :, j:j + 2 * TW:2] for j in range(4)], tiles[a])
        return tiles.reshape(16, C, T * TW * n)

    def buffers(self, k, O):
        """k workers' scratch: for input_tiles (the row transform and the tiles), and for
        16 and 8 arrays of O maps over a band's tiles (products and half-transforms)."""
        T = max(_rows_and_images(band)[0] for band in self.bands)
        n = max(_rows_and_images(band)[1] for band in self.bands)
        C, _, Wp, _ = self.xpad.shape
        tiles = T * self.tiles[1] * n
        return [(empty_apart((4 * C * T * n * (Wp + 4 * self.tiles[1]),), self.xpad),
                 self.xp.empty(16 * O * tiles, dtype=self.xpad.dtype),
                 self.xp.empty(8 * O * tiles, dtype=self.xpad.dtype)) for _ in range(k)]


def _rows_and_images(band):
    """A band's tile rows T and images n."""
    t0, t1, ns = band
    return t1 - t0, ns.stop - ns.start


def _rows_BT(xp, d, out):
    """out[0…3] = Bᵀ applied along the list d of 4 arrays: d0−d2, d1+d2, d2−d1, d1−d3."""
    xp.subtract(d[0], d[2], out=out[0])
    xp.add(d[1], d[2], out=out[1])
    xp.subtract(d[2], d[1], out=out[2])
    xp.subtract(d[1], d[3], out=out[3])


def _rows_AT(xp, m, out):
    """out[0, 1] = Aᵀ applied along the list m of 4 arrays: m0+m1+m2, m1−m2−m3."""
    xp.add(m[0], m[1], out=out[0])
    out[0] += m[2]
    xp.subtract(m[1], m[2], out=out[1])
    out[1] -= m[3]


def _rows_A(xp, g, out):
    """out[0…3] = A applied along the list g of 2 arrays (the adjoint of _rows_AT):
    g0, g0+g1, g0−g1, −g1."""
    out[0][...] = g[0]
    xp.add(g[0], g[1], out=out[1])
    xp.subtract(g[0], g[1], out=out[2])
    xp.negative(g[1], out=out[3])


def _tile_view(y, band, i, j):
    """Output (i, j) of every 2×2 tile of the band: a (O, T, TW, n) strided view of y."""
    t0, t1, ns = band
    return y[:, 2 * t0 + i:2 * t1:2, j::2, ns]


def winograd_conv(x, U, bias, pads):
    """y = w ⋆ x (+ b) at stride 1, from U = transform_kernel(w): (O, OH, OW, N)."""
    tiling = Tiling(x, pads)
    xp, N, O = tiling.xp, x.shape[3], U.shape[1]
    (OH, OW), (TH, TW) = tiling.out_hw, tiling.tiles
    y = xp.empty((O, 2 * TH, 2 * TW, N), dtype=x.dtype)

    def run(bands, buf):
        scratch, products, half = buf
        for band in bands:
            V = tiling.input_tiles(band, scratch)
            T, n = _rows_and_images(band)
            M = products[:16 * O * T * TW * n].reshape(16, O, T * TW * n)  # a prefix
            xp.matmul(U, V, out=M)  # the 16 products: (O, C) · (C, tiles) each
            M = M.reshape(4, 4, O, T, TW, n)  # ξ = (a, b), then the tile grid: a view
            s = half[:M.size // 2].reshape(2, 4, O, T, TW, n)
            _rows_AT(xp, M, s)  # Aᵀ M
            for i in range(2):  # (Aᵀ M) A, into the tile's outputs
                _rows_AT(xp, s[i], [_tile_view(y, band, i, j) for j in range(2)])
            if bias is not None:
                y[:, 2 * band[0]:2 * band[1], :, band[2]] += bias[:, None, None, None]

    parallel.map_bands(run, tiling.bands, lambda k: tiling.buffers(k, O), xp)
    whole = (OH, OW) == (2 * TH, 2 * TW)
    return y if whole else xp.ascontiguousarray(y[:, :OH, :OW])


def winograd_grad_kernel(gy, x, pads):
    """∂E/∂w of winograd_conv, (O, C, 3, 3): Gᵀ [Σ_tiles (A gy Aᵀ) · Vᵀ] G, each
    worker summing its own bands' (16, O, C) products."""
    tiling = Tiling(x, pads)
    xp, O = tiling.xp, gy.shape[0]
    (OH, OW), (TH, TW) = tiling.out_hw, tiling.tiles
    if (OH, OW) != (2 * TH, 2 * TW):  # odd sizes: zero outputs complete the last tiles
        gy = pad_spatial(gy, ((0, 2 * TH - OH), (0, 2 * TW - OW)))

    def run(bands, buf):
        scratch, gM, half = buf
        total = None
        for band in bands:
            V = tiling.input_tiles(band, scratch)
            T, n = _rows_and_images(band)
            h = half[:8 * O * T * TW * n].reshape(2, 4, O, T, TW, n)  # (j, a, …): a prefix
            for j in range(2):  # A gy, for outputs (·, j)
                _rows_A(xp, [_tile_view(gy, band, i, j) for i in range(2)], h[j])
            g = gM[:16 * O * T * TW * n].reshape(4, 4, O, T, TW, n)  # ∂E/∂M, ξ = (a, b)
            for a in range(4):  # (A gy) Aᵀ
                _rows_A(xp, [h[0][a], h[1][a]], g[a])
            part = xp.matmul(g.reshape(16, O, -1), V.swapaxes(1, 2))  # (16, O, C)
            if total is None:
                total = part
            else:
                total += part
        return total

    # every worker has at least one band (map_bands uses at most one per band)
    parts = parallel.map_bands(run, tiling.bands, lambda k: tiling.buffers(k, O), xp)
    return kernel_gradient(sum(parts[1:], parts[0]))
