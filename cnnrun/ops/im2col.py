"""im2col and col2im on the engine's batch-last layout, looping over kernel taps only.

The engine stores activations as (C, H, W, N): features first, batch last.
Each tap (i, j) of a KH×KW kernel then reads one strided slice of the padded
input, a copy whose innermost run is the whole batch, and the column matrix
comes out as (C·KH·KW, OH·OW·N), ready for one matrix product whose result is
already in (O, OH, OW, N) order. No per-pixel Python loop and no np.add.at:
col2im adds one strided slice per tap, which runs unchanged on NumPy and CuPy.
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


def im2col(xpad, kernel, out_hw, stride, dilation, out=None):
    """Columns (C, KH, KW, OH, OW, N) of an already padded (C, Hp, Wp, N) input."""
    xp = get_array_module(xpad)
    C, N = xpad.shape[0], xpad.shape[3]
    KH, KW = kernel
    OH, OW = out_hw
    if out is None:
        out = xp.empty((C, KH, KW, OH, OW, N), dtype=xpad.dtype)
    for i in range(KH):
        for j in range(KW):
            si, sj = tap_slices(i, j, out_hw, stride, dilation)
            out[:, i, j] = xpad[:, si, sj, :]
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
