"""Grouped 2-D convolution (cross-correlation) as im2col + matrix products, in bands.

Shapes (engine layout, batch last):
  x (C, H, W, N), weight (O, C/G, KH, KW) as in PyTorch, y (O, OH, OW, N).

The column matrix of a large input (ResNet's first stage: 9× the activation,
75 MB at batch 128) is never built whole. ``Patches`` holds the padded input
and builds the columns one band of output rows at a time, a few megabytes,
so each band is copied and multiplied while it is still in cache; the bands
run on all cores (``parallel.map_bands``). The backward pass rebuilds them the
same way rather than keeping them, which is also what keeps training memory
near the activations' own size. A small matrix (``whole_columns``) is built in
one piece and kept for the backward pass.

(Keeping larger matrices for the weight gradient, filled band by band, paid
while each band took one copy per kernel tap; since the columns are one copy of
a strided view, rebuilding them is as fast: LeNet-5 at batch 256 trained 1.09×
faster without, ResNet-20 and VGG-11 were even, and it used less memory.)

The input gradient of a stride-1 convolution is itself a convolution (of the
padded output gradient with the flipped, transposed kernel), so it runs
through the same banded forward; other strides use col2im band by band.
"""

from __future__ import annotations

from ..allocator import empty_apart
from ..backend import get_array_module, is_numpy
from .im2col import crop_spatial, im2col, pad_spatial, tap_slices, windows
from .parallel import map_bands, matmul

WHOLE_BYTES = 8 << 20   # columns up to this size are built in one piece (LeNet at batch 64)
# Otherwise one band of columns is about this size. 4 MB rather than 1: LeNet's 5×5
# convolutions at batch 256 (one 0.7 MB row per band at 1 MB) ran inference 1.36× faster in
# 4 MB bands, when each band still took one copy per kernel tap; ResNet-20 and VGG-11 were
# even. With one copy per band, 1 MB and 4 MB measured the same (LeNet b256, 8 rounds).
BAND_BYTES = 4 << 20


def whole_columns(column_bytes: int) -> bool:
    """Whether a convolution builds its column matrix whole (and keeps it for the backward
    pass) rather than band by band from its padded input."""
    return column_bytes <= WHOLE_BYTES


def _out_hw(padded_hw, kernel, stride, dilation):
    return tuple((n - (d * (k - 1) + 1)) // s + 1
                 for n, k, s, d in zip(padded_hw, kernel, stride, dilation))


class Patches:
    """The im2col matrix (C, KH, KW, OH, OW, N) of a padded input, whole or by bands of rows.

    A small matrix (``whole_columns``) is built whole, in the calling thread. A larger one
    is built in bands of about BAND_BYTES into per-worker scratch buffers, each multiplied
    while in cache, and rebuilt when the backward pass needs it again."""

    def __init__(self, xpad, kernel, stride, dilation):
        self.xp = get_array_module(xpad)
        self.xpad, self.kernel, self.stride, self.dilation = xpad, kernel, stride, dilation
        C, _, _, N = xpad.shape
        self.out_hw = OH, OW = _out_hw(xpad.shape[1:3], kernel, stride, dilation)
        self.K = C * kernel[0] * kernel[1]
        row_bytes = self.K * OW * N * xpad.dtype.itemsize
        whole = not is_numpy(self.xp) or whole_columns(row_bytes * OH)
        self.cols = self.windows = None  # the whole matrix, or the view bands copy from
        if whole:  # small: one band, in this thread (see parallel.ThreadMode)
            out = empty_apart((C, *kernel, OH, OW, N), xpad)
            self.cols = im2col(xpad, kernel, self.out_hw, stride, dilation, out=out)
            self.rows, self.bands = OH, [(0, OH)]
        else:
            self.windows = windows(xpad, kernel, self.out_hw, stride, dilation)
            R = max(1, min(OH, BAND_BYTES // row_bytes))
            self.rows, self.bands = R, [(r, min(R, OH - r)) for r in range(0, OH, R)]

    def buffers(self, k):
        """k flat scratch buffers, each large enough for the columns of one band."""
        if self.cols is not None:
            return [None] * k
        size = self.K * self.rows * self.out_hw[1] * self.xpad.shape[3]
        return [empty_apart((size,), self.xpad) for _ in range(k)]

    def band(self, r0, R, buf):
        """Columns of output rows r0 … r0+R−1 as a (K, R·OW·N) matrix."""
        C, _, _, N = self.xpad.shape
        OW = self.out_hw[1]
        if self.cols is not None:  # (C·KH·KW, R·OW·N): a slice of each row, a view
            return self.cols.reshape(self.K, -1)[:, r0 * OW * N:(r0 + R) * OW * N]
        out = buf[:self.K * R * OW * N].reshape(C, *self.kernel, R, OW, N)  # a prefix
        out[...] = self.windows[:, :, :, r0:r0 + R]  # the band's im2col: one copy
        return out.reshape(self.K, -1)  # (C·KH·KW, R·OW·N), a view

    def map(self, work):
        """work(cols, r0, R) over every band, on all cores; the list of per-worker results."""
        def run(bands, buf):
            return [work(self.band(r0, R, buf), r0, R) for r0, R in bands]
        return map_bands(run, self.bands, self.buffers, self.xp)


def _grouped(a, G):
    """(G·m, …) matrix → (G, m, …) for a batched product; unchanged view when G = 1."""
    return a if G == 1 else a.reshape(G, a.shape[0] // G, *a.shape[1:])


def apply_weight(patches, weight, bias, groups=1):
    """y = W ⋆ x (+ b) from the patches of x: (O, OH, OW, N)."""
    xp = patches.xp
    O = weight.shape[0]
    OH, OW = patches.out_hw
    N = patches.xpad.shape[3]
    y = xp.empty((O, OH, OW, N), dtype=patches.xpad.dtype)
    W2 = _grouped(weight.reshape(O, -1), groups)  # (G, O/G, K/G)

    def work(cols, r0, R):
        out = y[:, r0:r0 + R].reshape(O, R * OW * N)  # a view: rows are contiguous per map
        xp.matmul(W2, _grouped(cols, groups), out=_grouped(out, groups))
        if bias is not None:
            out += bias[:, None]
    patches.map(work)
    return y


def conv_forward(x, weight, bias, stride, pads, dilation, groups=1):
    """y = W ⋆ x + b. Returns y and the Patches of x, for the backward pass."""
    patches = Patches(pad_spatial(x, pads), weight.shape[2:], stride, dilation)
    return apply_weight(patches, weight, bias, groups), patches


def conv_grad_weight(gy, patches, weight_shape, groups=1):
    """∂E/∂W = Σ_bands gy · colsᵀ per group, shaped like the weight (O, C/G, KH, KW)."""
    xp = patches.xp
    O = weight_shape[0]

    def work(cols, r0, R):
        g = gy[:, r0:r0 + R].reshape(O, -1)  # (O, R·OW·N)
        return xp.matmul(_grouped(g, groups), _grouped(cols, groups).swapaxes(-1, -2))
    parts = [p for share in patches.map(work) for p in share]
    return sum(parts[1:], parts[0]).reshape(weight_shape)


def transposed_kernel(weight, groups):
    """The kernel of the adjoint: flipped 180° and with in/out maps swapped per group."""
    O, Cg, KH, KW = weight.shape
    w = weight.reshape(groups, O // groups, Cg, KH, KW)[..., ::-1, ::-1]
    return w.transpose(0, 2, 1, 3, 4).reshape(groups * Cg, O // groups, KH, KW)


def conv_grad_input(gy, weight, in_hw, stride, pads, dilation, groups=1):
    """∂E/∂x, the adjoint of conv_forward in x: (C, H, W, N)."""
    KH, KW = weight.shape[2:]
    full = [(d * (k - 1) - a, d * (k - 1) - b)
            for k, d, (a, b) in zip((KH, KW), dilation, pads)]
    out_hw = gy.shape[1:3]
    if stride == (1, 1) and min(min(f) for f in full) >= 0 and \
            in_hw[0] * in_hw[1] <= 1.25 * out_hw[0] * out_hw[1]:
        # stride 1 and about as many inputs as outputs ('same' padding): a convolution
        # of the padded gradient with the transposed kernel, at the forward's cost.
        # (A 'valid' 5×5 on 14×14 would multiply twice as many zeros as it saves.)
        y, _ = conv_forward(gy, transposed_kernel(weight, groups), None, (1, 1), full,
                            dilation, groups)
        return y
    return _col2im_grad(gy, weight, in_hw, stride, pads, dilation, groups)


def _col2im_grad(gy, weight, in_hw, stride, pads, dilation, groups):
    """col2im(Wᵀ · gy), band by band so the gradient columns stay small."""
    xp = get_array_module(gy)
    O, OH, OW, N = gy.shape
    _, Cg, KH, KW = weight.shape
    C = Cg * groups
    (pt, pb), (pl, pr) = pads
    img = xp.zeros((C, in_hw[0] + pt + pb, in_hw[1] + pl + pr, N), dtype=gy.dtype)
    WT = _grouped(weight.reshape(O, -1), groups).swapaxes(-1, -2)  # (G, K/G, O/G)
    row_bytes = C * KH * KW * OW * N * gy.dtype.itemsize
    whole = not is_numpy(xp) or whole_columns(row_bytes * OH)
    R = OH if whole else max(1, min(OH, BAND_BYTES // row_bytes))
    sh = stride[0]
    for r0 in range(0, OH, R):
        r = min(R, OH - r0)
        g = _grouped(gy[:, r0:r0 + r].reshape(O, -1), groups)  # (G, O/G, r·OW·N)
        gcols = matmul(WT, g).reshape(C, KH, KW, r, OW, N)
        for i in range(KH):
            for j in range(KW):
                si, sj = tap_slices(i, j, (r, OW), stride, dilation)
                si = slice(si.start + r0 * sh, si.stop + r0 * sh, sh)
                img[:, si, sj, :] += gcols[:, i, j]
    return crop_spatial(img, pads)


def conv_backward(gy, weight, patches, in_hw, stride, pads, dilation, groups, need_gx, has_bias,
                  need_params=True):
    """The three gradients of conv_forward: (gx or None, gW or None, gb or None)."""
    gW = conv_grad_weight(gy, patches, weight.shape, groups) if need_params else None
    gb = gy.sum(axis=(1, 2, 3)) if (need_params and has_bias) else None
    gx = conv_grad_input(gy, weight, in_hw, stride, pads, dilation, groups) if need_gx else None
    return gx, gW, gb
