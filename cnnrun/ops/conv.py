"""Grouped 2-D convolution (cross-correlation) as matrix products.

Shapes (engine layout, batch last):
  x (C, H, W, N), weight (O, C/G, KH, KW) as in PyTorch, y (O, OH, OW, N).

A small input's forward product reads *row shifts*, not im2col. im2col copies
the input KH·KW times (25× for LeNet's 5×5 kernels); ``Patches.band`` copies it
KW times: for every input row, the KW horizontal shifts of every channel, laid
out (G, rows, C/G, KW, OW, N). In that layout the KH·(C/G)·KW column entries of
output row r are consecutive blocks of OW·N elements starting at input row
r·stride, so each output row's column matrix is a strided *view*, and
neighbouring rows share the input rows they overlap. The forward is one
batched product over output rows on BLAS's threads, the kernel reordered to
match (kernel row, channel, kernel column): LeNet-5 inferred 1.20× faster at
batch 64 (5 interleaved rounds). Vertical dilation breaks the overlap: such a
convolution copies all KH·KW taps per row.

Larger inputs, and every weight gradient, go through im2col bands
(``Patches.map_columns``): the column matrix of a band of output rows, a few
megabytes, is one copy of a strided view (``spatial.windows``), multiplied
while still in cache in one product with a long inner dimension; bands run on
all cores (``parallel.map_bands``). Nothing larger than a band is built
(ResNet-20's first-stage im2col would be 75 MB at batch 128) except an im2col
matrix up to WHOLE_BYTES, and nothing is kept between the passes but the
padded input (or, where the backward reads only gy's columns, x itself: see
``conv_grad``), which keeps training memory near the activations' own size.

The gradients are in ``conv_grad``; the weight gradient from the input's
columns is here, beside the forward that shares its column matrices.
"""

from __future__ import annotations

from .allocator import empty_apart
from .backend import get_array_module, is_numpy
from .parallel import map_bands, product
from .shapes import conv_out_shape
from .spatial import pad_spatial, strided_view, windows

WHOLE_BYTES = 8 << 20   # im2col matrices up to this size are built in one piece (LeNet b64)
# Otherwise one band is about this size. 4 MB rather than 1: LeNet's 5×5 convolutions at
# batch 256 (one 0.7 MB im2col row per band at 1 MB) ran inference 1.36× faster in 4 MB
# bands when each band took one copy per kernel tap; ResNet-20 and VGG-11 were even.
BAND_BYTES = 4 << 20
SHIFT_BYTES = 4 << 20  # inputs whose row shifts fit here take the forward from shifts


def whole_columns(column_bytes: int) -> bool:
    """Whether an im2col matrix is built in one piece, in the calling thread."""
    return column_bytes <= WHOLE_BYTES


def shift_elements(channels, kernel, out_hw, stride, dilation, batch=1) -> int:
    """Elements of an input's row shifts: KW copies of every input row the output rows
    read, or with vertical dilation all KH·KW taps per output row."""
    (KH, KW), (OH, OW) = kernel, out_hw
    per_row = channels * KW * OW * batch
    if dilation[0] == 1:
        return ((OH - 1) * stride[0] + KH) * per_row
    return OH * KH * per_row


def _bands(OH, R):
    return [(r, min(R, OH - r)) for r in range(0, OH, R)]


def _band_rows(xp, OH, row_bytes) -> int:
    """Output rows per band of a column matrix with rows of row_bytes: all of them up to
    WHOLE_BYTES (or on a GPU), else about BAND_BYTES."""
    if not is_numpy(xp) or whole_columns(row_bytes * OH):
        return OH
    return max(1, min(OH, BAND_BYTES // row_bytes))


class Patches:
    """A padded input's column matrices: from row shifts for the forward product of a small
    input (``band``), else from im2col by bands of output rows (``map_columns``)."""

    def __init__(self, xpad, kernel, stride, dilation, groups=1):
        self.xp = get_array_module(xpad)
        self.xpad, self.kernel, self.stride, self.dilation = xpad, kernel, stride, dilation
        self.groups = G = groups
        C, _, _, N = xpad.shape
        self.out_hw = OH, OW = conv_out_shape(xpad.shape[1:3], kernel, stride, ((0, 0),) * 2,
                                               dilation)  # xpad is padded already
        self.Kg = C // G * kernel[0] * kernel[1]
        self.shifted = dilation[0] == 1  # output rows overlap in the shifts (see above)
        item = xpad.dtype.itemsize

        # Shifts are used where they are small: there the forward is one batched
        # product on BLAS's threads. Larger inputs go through im2col bands on the workers:
        # per-row products from shifts ran ResNet-20's training 6 % slower (4 rounds).
        self.shift_size = shift_elements(C, kernel, self.out_hw, stride, dilation, N)
        self.use_shifts = not is_numpy(self.xp) or self.shift_size * item <= SHIFT_BYTES

    # ---- row shifts, for the forward product ------------------------------------------
    def _shift(self, r0, R, buf):
        """Copy the input rows that output rows r0 … r0+R−1 read into buf, shaped
        (G, rows, C/G, KW, OW, N), or (G, R, KH, C/G, KW, OW, N) with vertical dilation."""
        G, (KH, KW), (sh, sw), (dh, dw) = self.groups, self.kernel, self.stride, self.dilation
        C, _, _, N = self.xpad.shape
        sC, sH, sW, sN = self.xpad.strides
        tail = (C // G, KW, self.out_hw[1], N)
        tail_strides = (sC, dw * sW, sw * sW, sN)
        if self.shifted:
            shape = (G, (R - 1) * sh + KH, *tail)
            strides = (C // G * sC, sH, *tail_strides)
        else:
            shape = (G, R, KH, *tail)
            strides = (C // G * sC, sh * sH, dh * sH, *tail_strides)
        source = strided_view(self.xpad[:, r0 * sh:], shape, strides)
        out = buf[:source.size].reshape(shape)  # a prefix of the buffer
        out[...] = source  # one copy, written in order
        return out

    def band(self, r0, R, buf):
        """Columns of output rows r0 … r0+R−1, shifted into buf: (G, R, KH·(C/G)·KW, OW·N),
        a view (read-only where rows overlap)."""
        shifts = self._shift(r0, R, buf)
        L = self.out_hw[1] * self.xpad.shape[3]
        if not self.shifted:
            return shifts.reshape(self.groups, R, self.Kg, L)
        sG, sRow = shifts.strides[:2]  # sRow: one input row of shifts, (C/G)·KW·L elements
        item = shifts.dtype.itemsize
        return strided_view(shifts, (self.groups, R, self.Kg, L),
                            (sG, self.stride[0] * sRow, L * item, item))

    # ---- im2col bands, for larger inputs and the weight gradient ------------------------
    def column_rows(self) -> int:
        """Output rows per im2col band: all of them up to WHOLE_BYTES, else about BAND_BYTES."""
        OH, OW = self.out_hw
        row_bytes = self.Kg * self.groups * OW * self.xpad.shape[3] * self.xpad.dtype.itemsize
        return _band_rows(self.xp, OH, row_bytes)

    def map_columns(self, work):
        """work(cols, r0, R) over im2col bands, cols a (C·KH·KW, R·OW·N) matrix, on all cores;
        the per-worker results."""
        C, _, _, N = self.xpad.shape
        (OH, OW), K = self.out_hw, self.Kg * self.groups
        view = windows(self.xpad, self.kernel, self.out_hw, self.stride, self.dilation)
        row = K * OW * N  # elements per output row
        R = self.column_rows()

        def run(bands, buf):
            out = []
            for r0, r in bands:
                cols = buf[:row * r].reshape(C, *self.kernel, r, OW, N)  # a prefix
                cols[...] = view[:, :, :, r0:r0 + r]  # the band's im2col: one copy
                out.append(work(cols.reshape(K, -1), r0, r))  # (C·KH·KW, r·OW·N)
            return out

        def buffers(k):
            return [empty_apart((row * R,), self.xpad) for _ in range(k)]
        return map_bands(run, _bands(OH, R), buffers, self.xp)


def _kernel_rows(weight, G):
    """(O, C/G, KH, KW) → (G, 1, O/G, KH·(C/G)·KW): each output map's weights in the shifts'
    column order (kernel row, channel, kernel column), broadcast over output rows."""
    O, Cg, KH, KW = weight.shape
    w = weight.reshape(G, O // G, Cg, KH, KW).transpose(0, 1, 3, 2, 4)
    return w.reshape(G, 1, O // G, KH * Cg * KW)  # a copy: the axes were reordered


def _kernel_from_rows(rows, weight_shape):
    """The inverse of _kernel_rows: (G, O/G, KH·(C/G)·KW) in the shifts' column order →
    (O, C/G, KH, KW)."""
    _, Cg, KH, KW = weight_shape
    w = rows.reshape(*rows.shape[:2], KH, Cg, KW)
    return w.transpose(0, 1, 3, 2, 4).reshape(weight_shape)  # a copy: axes reordered


def _output_rows(y, G):
    """A (O, OH, OW, N) array as (G, OH, O/G, OW·N), a view where y is contiguous (each
    (O/G, OW·N) slice then has unit stride along its rows, as BLAS needs)."""
    O, OH, OW, N = y.shape
    return y.reshape(G, O // G, OH, OW * N).transpose(0, 2, 1, 3)


def apply_weight(patches, weight, bias, groups=1):
    """y = W ⋆ x (+ b) from the patches of x: (O, OH, OW, N)."""
    xp, G = patches.xp, patches.groups
    assert groups == G, "the patches were made for another number of groups"
    O = weight.shape[0]
    OH, OW = patches.out_hw
    N = patches.xpad.shape[3]
    y = xp.empty((O, OH, OW, N), dtype=patches.xpad.dtype)
    if patches.use_shifts:
        return weight_times_shifts(shifted_columns(patches), weight, bias, y)
    W2 = _grouped(weight.reshape(O, -1), G)  # (G, O/G, K/G)

    def work(cols, r0, R):
        out = y[:, r0:r0 + R].reshape(O, R * OW * N)  # a view: rows are contiguous per map
        xp.matmul(W2, _grouped(cols, G), out=_grouped(out, G))
        if bias is not None:
            out += bias[:, None]
    patches.map_columns(work)
    return y


def shifted_columns(patches):
    """Every output row's columns, from the row shifts: (G, OH, KH·(C/G)·KW, OW·N)."""
    return patches.band(0, patches.out_hw[0],
                        empty_apart((patches.shift_size,), patches.xpad))


def weight_times_shifts(cols, weight, bias, y):
    """y = W · cols (+ b), one product per output row straight into y (O, OH, OW, N)."""
    xp, G, O = get_array_module(cols), cols.shape[0], weight.shape[0]
    out = _output_rows(y, G)
    if is_numpy(xp):
        xp.matmul(_kernel_rows(weight, G), cols, out=out)
    else:
        out[...] = xp.matmul(_kernel_rows(weight, G), cols)
    if bias is not None:
        out += bias.reshape(G, 1, O // G, 1)
    return y


def conv_forward(x, weight, bias, stride, pads, dilation, groups=1):
    """y = W ⋆ x + b. Returns y and the Patches of x, for the backward pass."""
    patches = Patches(pad_spatial(x, pads), weight.shape[2:], stride, dilation, groups)
    return apply_weight(patches, weight, bias, groups), patches


def conv_grad_weight(gy, patches, weight_shape, groups=1):
    """∂E/∂W = Σ_bands gy · colsᵀ per group, shaped like the weight (O, C/G, KH, KW)."""
    xp = patches.xp
    if patches.use_shifts and is_numpy(xp):
        return _grad_weight_from_shifts(gy, patches, weight_shape)
    O = weight_shape[0]

    def work(cols, r0, R):
        g = gy[:, r0:r0 + R].reshape(O, -1)  # (O, R·OW·N)
        return product(_grouped(g, groups), _grouped(cols, groups).swapaxes(-1, -2))
    parts = [p for share in patches.map_columns(work) for p in share]
    return sum(parts[1:], parts[0]).reshape(weight_shape)


def _grad_weight_from_shifts(gy, patches, weight_shape):
    """∂E/∂W of a small input from its row shifts: Σ over output rows r of gy_r · cols_rᵀ,
    one batched product, with no im2col matrix (25× LeNet's first input at batch 64).

    Each output row's columns are a view of the shifts (see ``Patches.band``), so the
    products read the input KW times instead of KH·KW: LeNet-5's first weight gradient
    at batch 64 took 0.86 ms instead of 1.22 (its 6 × 50,176 by 50,176 × 25 product reads
    5 MB of columns at 15 GFLOP/s)."""
    xp, G = patches.xp, patches.groups
    cols = shifted_columns(patches)
    per_row = xp.matmul(_output_rows(gy, G), cols.swapaxes(-1, -2))  # (G, OH, O/G, Kg)
    return _kernel_from_rows(per_row.sum(axis=1), weight_shape)  # Σ over output rows


def _grouped(a, G):
    """(G·m, …) matrix → (G, m, …) for a batched product; unchanged view when G = 1."""
    return a if G == 1 else a.reshape(G, a.shape[0] // G, *a.shape[1:])
