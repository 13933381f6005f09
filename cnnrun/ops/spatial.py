"""Spatial helpers on the engine's batch-last (C, H, W, N) layout: padding, cropping, and the
strided slice a kernel tap reads, and the im2col view, shared by convolution and pooling."""

from __future__ import annotations

from .backend import get_array_module, is_numpy
from .parallel import by_channels


def pad_spatial(x, pads, value=0.0):
    """Pad the two spatial axes of a (C, H, W, N) array; pads = ((top, bottom), (left, right))."""
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0:
        return x
    xp = get_array_module(x)
    C, H, W, N = x.shape
    out = xp.empty((C, H + pt + pb, W + pl + pr, N), dtype=x.dtype)

    def fill(c):  # channels c: only the border strips are set, then the interior copied
        # (filling the whole array first wrote it twice: ResNet-20's first-stage pads,
        # 8 MB, took 1.55 ms instead of 1.0)
        out[c, :pt] = value
        out[c, pt + H:] = value
        out[c, pt:pt + H, :pl] = value
        out[c, pt:pt + H, pl + W:] = value
        out[c, pt:pt + H, pl:pl + W] = x[c]
    by_channels(fill, out)
    return out


def tap_slices(i, j, out_hw, stride, dilation):
    """The strided slices of a padded input read by kernel tap (i, j)."""
    (OH, OW), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return (slice(i * dh, i * dh + sh * (OH - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (OW - 1) + 1, sw))


def windows(xpad, kernel, out_hw, stride, dilation):
    """The im2col columns (C, KH, KW, OH, OW, N) of a padded (C, Hp, Wp, N) input as a
    read-only strided view: element [c, i, j, oh, ow, n] is xpad[c, oh·sh + i·dh, ow·sw + j·dw, n].
    No data moves until it is copied (one copy, written in order)."""
    sC, sH, sW, sN = xpad.strides
    (sh, sw), (dh, dw) = stride, dilation
    shape = (xpad.shape[0], *kernel, *out_hw, xpad.shape[3])
    return strided_view(xpad, shape, (sC, sH * dh, sW * dw, sH * sh, sW * sw, sN))


def strided_view(a, shape, strides):
    """``as_strided`` of a, read-only on NumPy: its elements may overlap, so a write would
    change its neighbours (CuPy's as_strided has no writeable flag)."""
    xp = get_array_module(a)
    if is_numpy(xp):
        return xp.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(a, shape, strides)


def crop_spatial(x, pads):
    """Undo pad_spatial: keep the interior of a (C, Hp, Wp, N) array."""
    (pt, pb), (pl, pr) = pads
    H, W = x.shape[1] - pt - pb, x.shape[2] - pl - pr
    return x[:, pt:pt + H, pl:pl + W]
