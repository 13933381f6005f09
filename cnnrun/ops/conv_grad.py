"""The gradients of a grouped 2-D convolution (engine layout (C, H, W, N), see ``conv``).

∂E/∂W is Σ gy · colsᵀ and ∂E/∂x the adjoint of the forward. At stride 1 with
'same'-like padding ∂E/∂x is itself a convolution: of gy, padded by d(k−1) − p,
with the flipped, transposed kernel. Its column matrix serves the weight
gradient too (``_grads_from_gy_columns``), so such a backward builds one im2col,
of gy, instead of two, and the forward's padded copy of x is freed when the
forward ends (``SavedInput``). Other geometries take ∂E/∂W from the columns of
the padded input and ∂E/∂x from col2im, band by band. 3×3 convolutions at stride 1
with many maps run all three in Winograd's transformed domain (``winograd``), and
convolutions of maps of a few pixels as products with the kernel's Toeplitz matrix
(``toeplitz``), which multiplies less than either there.
"""

from __future__ import annotations

import math

from .backend import get_array_module, is_numpy
from . import parallel  # parallel.workers is read at call time (tests set num_workers)
from . import toeplitz, winograd
from .conv import (Patches, _band_rows, _grouped, _output_rows, conv_forward,
                   conv_grad_weight, shifted_columns, weight_times_shifts, whole_columns)
from .parallel import map_bands, matmul, product
from .rows import channel_sums
from .shapes import conv_out_size
from .spatial import crop_spatial, pad_spatial, tap_slices


class SavedInput:
    """What a convolution's backward keeps of its input x: x itself where both gradients
    come from gy's columns, from Winograd's tiles or from a Toeplitz product (then the
    padded copy the forward read is freed with the forward; a Toeplitz product keeps its
    matrix too), else the padded input's Patches, which the weight gradient reads."""

    def __init__(self, x, geometry, pads, patches: Patches | None, algorithm: str,
                 plan: toeplitz.Toeplitz | None = None):
        self.in_hw, self.pads = tuple(x.shape[1:3]), pads
        self.kernel, self.stride, self.dilation, self.groups = geometry
        self.algorithm = algorithm  # "toeplitz", "winograd", "gy-columns" or "patches"
        self.x = None if algorithm == "patches" else x
        self._patches = patches if algorithm == "patches" else None
        self.toeplitz = plan

    def patches(self) -> Patches:
        """The padded input's Patches, padded again where only x was kept (a first layer,
        which needs no ∂E/∂x, and the R-operator)."""
        if self._patches is None:
            self._patches = Patches(pad_spatial(self.x, self.pads), self.kernel, self.stride,
                                    self.dilation, self.groups)
        return self._patches


def algorithm(in_hw, kernel, stride, pads, dilation, groups, in_channels, out_channels,
              itemsize, xp=None) -> str:
    """The path a convolution takes, the one rule conv_forward_saving runs and a layer's
    memory estimate reads (any number of spatial axes): "toeplitz", "winograd",
    "gy-columns" (both gradients from gy's columns) or "patches"."""
    if toeplitz.applies(in_hw, kernel, stride, pads, dilation, groups, in_channels,
                        out_channels, itemsize, xp):
        return "toeplitz"
    if winograd.applies(kernel, stride, dilation, groups, in_channels, out_channels, xp):
        return "winograd"
    out_hw = [conv_out_size(n, k, st, pad, d)
              for n, k, st, pad, d in zip(in_hw, kernel, stride, pads, dilation)]
    return "gy-columns" if input_grad_is_conv(kernel, in_hw, out_hw, stride, pads, dilation) \
        else "patches"


def conv_forward_saving(x, weight, bias, stride, pads, dilation, groups=1):
    """conv_forward, and the SavedInput its backward (``conv_backward``) reads."""
    kernel = weight.shape[2:]
    geometry = (kernel, stride, dilation, groups)
    path = algorithm(x.shape[1:3], kernel, stride, pads, dilation, groups, x.shape[0],
                     weight.shape[0], x.dtype.itemsize, get_array_module(x))
    if path == "toeplitz":
        plan = toeplitz.Toeplitz(weight, x.shape[1:3], stride, pads, dilation)
        return plan.forward(x, bias), SavedInput(x, geometry, pads, None, path, plan)
    if path == "winograd":
        y = winograd.conv(x, winograd.transform_kernel(weight), bias, pads)
        return y, SavedInput(x, geometry, pads, None, path)
    y, patches = conv_forward(x, weight, bias, stride, pads, dilation, groups)
    return y, SavedInput(x, geometry, pads, patches, path)


def conv_backward(gy, weight, saved: SavedInput, need_gx, has_bias, need_params=True):
    """The three gradients of conv_forward_saving: (gx or None, gW or None, gb or None); the
    geometry is the forward's, as ``saved`` holds it."""
    s, G = saved, saved.groups
    gb = channel_sums(gy) if (need_params and has_bias) else None
    if s.algorithm == "toeplitz":
        return (*s.toeplitz.backward(gy, s.x, need_gx, need_params), gb)
    if s.algorithm == "winograd":
        gW = winograd.grad_kernel(gy, s.x, s.pads) if need_params else None
        return (_winograd_grad_input(gy, weight, s) if need_gx else None), gW, gb
    if need_gx and need_params and s.algorithm == "gy-columns":
        gx, gW = _grads_from_gy_columns(gy, weight, s.x, s.pads, s.dilation, G)
        return gx, gW, gb
    gW = conv_grad_weight(gy, s.patches(), weight.shape, G) if need_params else None
    gx = conv_grad_input(gy, weight, s.in_hw, s.stride, s.pads, s.dilation, G) \
        if need_gx else None
    return gx, gW, gb


def _winograd_grad_input(gy, weight, s: SavedInput):
    """∂E/∂x of a Winograd convolution: the same algorithm on gy padded by 2 − p, with the
    transposed, flipped kernel (col2im where a padding exceeds 2)."""
    pads = adjoint_pads(s.kernel, s.pads, s.dilation)
    if min(min(p) for p in pads) < 0:
        return conv_grad_input(gy, weight, s.in_hw, s.stride, s.pads, s.dilation, s.groups)
    return winograd.conv(gy, winograd.transform_kernel(transposed_kernel(weight, 1)), None,
                         pads)


def _grads_from_gy_columns(gy, weight, x, pads, dilation, groups):
    """(∂E/∂x, ∂E/∂W) of a stride-1 convolution from one column matrix, of the padded gy.

    ∂E/∂x = W̃ ⋆ gy_pad reads cols[(o, i', j'), (h, w, n)] = gy_pad[o, h + dh·i', w + dw·j', n]
    over the input grid. Writing ∂E/∂W[o, c, i, j] = Σ gy[o, oh, ow, n]·xpad[c, oh + dh·i, …]
    in the input's coordinates h = oh + dh·i − pt gives Σ_{h, w, n} x[c, h, w, n] ·
    cols[(o, KH−1−i, KW−1−j), (h, w, n)]: gy_pad is zero wherever gy is not, as xpad is
    outside x. So ∂E/∂W is x · colsᵀ, kernel flipped, with no im2col of x."""
    xp = get_array_module(gy)
    x = xp.ascontiguousarray(x)  # its bands of rows are then (C, R·W·N) views
    KH, KW = weight.shape[2:]
    wt = transposed_kernel(weight, groups)  # (C, O/G, KH, KW)
    patches = Patches(pad_spatial(gy, adjoint_pads((KH, KW), pads, dilation)), (KH, KW),
                      (1, 1), dilation, groups)
    if patches.use_shifts:
        cols = shifted_columns(patches)  # (G, H, KH·(O/G)·KW, W·N)
        gx = weight_times_shifts(cols, wt, None, xp.empty_like(x))
        per_row = xp.matmul(_output_rows(x, groups), cols.swapaxes(-1, -2))  # (G, H, C/G, ·)
        return gx, _unflip_kernel(per_row.sum(axis=1), weight.shape, groups, from_shifts=True)
    C, _, W, N = x.shape
    gx = xp.empty_like(x)
    wt2 = _grouped(wt.reshape(C, -1), groups)  # (G, C/G, (O/G)·KH·KW)

    def work(cols, r0, R):  # cols: (O·KH·KW, R·W·N), rows in (o, i', j') order
        out = gx[:, r0:r0 + R].reshape(C, R * W * N)  # views: rows are contiguous per map
        xb = x[:, r0:r0 + R].reshape(C, R * W * N)
        xp.matmul(wt2, _grouped(cols, groups), out=_grouped(out, groups))
        return product(_grouped(xb, groups), _grouped(cols, groups).swapaxes(-1, -2))
    parts = [p for share in patches.map_columns(work) for p in share]
    return gx, _unflip_kernel(sum(parts[1:], parts[0]), weight.shape, groups)


def _unflip_kernel(g, weight_shape, groups, from_shifts=False):
    """x · colsᵀ, summed: (C, O·KH·KW) or (G, C/G, (O/G)·KH·KW) in im2col's column order
    (o, i', j'), or the shifts' (i', o, j'), as ∂E/∂W (O, C/G, KH, KW): the maps swapped
    back and the kernel flipped back (i = KH−1−i')."""
    O, Cg, KH, KW = weight_shape
    G, Og = groups, O // groups
    if from_shifts:
        g = g.reshape(G, Cg, KH, Og, KW).transpose(0, 1, 3, 2, 4)
    else:
        g = g.reshape(G, Cg, Og, KH, KW)
    return g[..., ::-1, ::-1].transpose(0, 2, 1, 3, 4).reshape(weight_shape)  # a copy


def transposed_kernel(weight, groups):
    """The kernel of the adjoint: flipped 180° and with in/out maps swapped per group."""
    O, Cg, KH, KW = weight.shape
    w = weight.reshape(groups, O // groups, Cg, KH, KW)[..., ::-1, ::-1]
    return w.transpose(0, 2, 1, 3, 4).reshape(groups * Cg, O // groups, KH, KW)


def adjoint_pads(kernel, pads, dilation):
    """The padding of gy whose convolution with the transposed kernel gives ∂E/∂x at
    stride 1: d(k−1) − p on each side (negative where the forward's padding is larger)."""
    return tuple((d * (k - 1) - a, d * (k - 1) - b) for k, d, (a, b) in zip(kernel, dilation, pads))


def input_grad_is_conv(kernel, in_hw, out_hw, stride, pads, dilation) -> bool:
    """Whether ∂E/∂x is computed as a convolution of the padded gy: at stride 1 with
    about as many inputs as outputs ('same' padding), at the forward's cost. (A 'valid'
    5×5 on 14×14 would multiply twice as many zeros as it saves: col2im there.) Any
    number of spatial axes: a layer asks with its own (conv1d's one)."""
    return all(s == 1 for s in stride) and \
        min(min(f) for f in adjoint_pads(kernel, pads, dilation)) >= 0 and \
        math.prod(in_hw) <= 1.25 * math.prod(out_hw)


def conv_grad_input(gy, weight, in_hw, stride, pads, dilation, groups=1):
    """∂E/∂x, the adjoint of conv_forward in x: (C, H, W, N)."""
    kernel = weight.shape[2:]
    if input_grad_is_conv(kernel, in_hw, gy.shape[1:3], stride, pads, dilation):
        y, _ = conv_forward(gy, transposed_kernel(weight, groups), None, (1, 1),
                            adjoint_pads(kernel, pads, dilation), dilation, groups)
        return y
    return _col2im_grad(gy, weight, in_hw, stride, pads, dilation, groups)


def _col2im_grad(gy, weight, in_hw, stride, pads, dilation, groups):
    """col2im(Wᵀ · gy), band by band so the gradient columns stay small.

    Large gradients run on all cores, each worker taking its own input channels
    (its rows of Wᵀ) through every band: the workers then add into disjoint
    parts of the image, where bands of neighbouring output rows would overlap.
    On one core the tap additions took half of ResNet-20's stride-2 input gradients."""
    xp = get_array_module(gy)
    O, OH, OW, N = gy.shape
    _, Cg, KH, KW = weight.shape
    (pt, pb), (pl, pr) = pads
    img = xp.zeros((Cg * groups, in_hw[0] + pt + pb, in_hw[1] + pl + pr, N), dtype=gy.dtype)
    channel_row_bytes = KH * KW * OW * N * gy.dtype.itemsize  # one channel's, one output row
    Og = O // groups

    def run(pieces, product):
        for g, c0, c1 in pieces:  # group g's input channels c0 … c1−1
            WT = weight[g * Og:(g + 1) * Og, c0:c1].reshape(Og, -1).T  # (n·KH·KW, O/G)
            dst = img[g * Cg + c0:g * Cg + c1]
            R = _band_rows(xp, OH, (c1 - c0) * channel_row_bytes)
            for r0 in range(0, OH, R):
                r = min(R, OH - r0)
                g_band = gy[g * Og:(g + 1) * Og, r0:r0 + r].reshape(Og, -1)  # (O/G, r·OW·N)
                gcols = product(WT, g_band).reshape(c1 - c0, KH, KW, r, OW, N)
                _add_columns(dst, gcols, r0, stride, dilation)

    whole = [(g, 0, Cg) for g in range(groups)]
    if not is_numpy(xp) or whole_columns(Cg * groups * channel_row_bytes * OH) or \
            parallel.workers() == 1:
        run(whole, matmul)
    else:  # in the workers BLAS runs on one thread, so the plain (GIL-free) product
        share = -(-Cg // parallel.workers())  # channels per worker, rounded up
        split = whole if groups > 1 else \
            [(0, c, min(c + share, Cg)) for c in range(0, Cg, share)]
        map_bands(run, split, lambda n: [product] * n, xp)
    return crop_spatial(img, pads)


def _add_columns(img, gcols, r0, stride, dilation):
    """Add a band's gradient columns (C, KH, KW, r, OW, N), from output row r0, into the
    padded image tap by tap."""
    _, KH, KW, r, OW, _ = gcols.shape
    sh = stride[0]
    for i in range(KH):
        for j in range(KW):
            si, sj = tap_slices(i, j, (r, OW), stride, dilation)
            si = slice(si.start + r0 * sh, si.stop + r0 * sh, sh)
            img[:, si, sj, :] += gcols[:, i, j]


