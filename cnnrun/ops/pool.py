"""Window reductions for pooling on (C, H, W, N) arrays, looping over kernel taps only.

Max-pool keeps, per output unit, the index of the first tap that holds the
window's maximum; backward sends the whole gradient to that one input (as
PyTorch does). Routing it to every tied maximum would multiply gradients on
MNIST's flat zero backgrounds.

Max-pooling's passes over a large input run on every core, split by channels
(``parallel.by_channels``): each window lies in one channel.
"""

from __future__ import annotations

from .backend import get_array_module
from .parallel import by_channels
from .spatial import tap_slices


def taps(kernel):
    """(t, i, j) for every tap of a KH×KW kernel, row-major (t is the flat index)."""
    KH, KW = kernel
    for i in range(KH):
        for j in range(KW):
            yield i * KW + j, i, j


def max_forward(xpad, kernel, out_hw, stride, dilation):
    """Window maxima (C, OH, OW, N): an element-wise maximum over the taps' slices.

    No argmax is kept: backward finds each window's first maximum again (see winners),
    which costs what tracking it here would, and inference pays nothing for it."""
    xp = get_array_module(xpad)
    y = xp.empty((xpad.shape[0], *out_hw, xpad.shape[3]), dtype=xpad.dtype)

    def part(c):  # channels c
        for t, i, j in taps(kernel):
            v = xpad[(c, *tap_slices(i, j, out_hw, stride, dilation))]
            if t == 0:
                y[c] = v
            else:
                xp.maximum(y[c], v, out=y[c])
    by_channels(part, y)
    return y


def winners(xpad, y, kernel, stride, dilation):
    """(tap slices, mask) per tap: the mask marks windows whose *first* maximum is this tap."""
    xp = get_array_module(y)
    taken = xp.zeros(y.shape, dtype=bool)
    for _, i, j in taps(kernel):
        sl = (slice(None), *tap_slices(i, j, y.shape[1:3], stride, dilation))
        m = xpad[sl] == y
        m &= ~taken
        taken |= m
        yield sl, m


def max_gather(xpad, rxpad, y, kernel, stride, dilation):
    """Values of rxpad at each window's winner (the R-operator of max-pooling)."""
    out = None
    for sl, m in winners(xpad, y, kernel, stride, dilation):
        v = rxpad[sl] * m
        out = v if out is None else out + v
    return out


def max_backward(gy, xpad, y, kernel, stride, dilation):
    """Scatter gy to the winning tap of each window; overlapping windows add up."""
    xp = get_array_module(gy)
    gx = xp.empty(xpad.shape, dtype=gy.dtype)
    if all(d == 1 and s == k and o * s == n for k, s, d, o, n in
           zip(kernel, stride, dilation, y.shape[1:3], xpad.shape[1:3])):
        rule = _max_backward_tiled
    elif all(d == 1 and s >= k for k, s, d in zip(kernel, stride, dilation)):
        rule = _max_backward_disjoint
    else:
        rule = _max_backward_overlapping
    by_channels(lambda c: rule(gy[c], xpad[c], y[c], kernel, stride, dilation, gx[c]), gx)
    return gx


def _max_backward_overlapping(gy, xpad, y, kernel, stride, dilation, gx):
    """max_backward into gx in general: each tap adds its winners' share."""
    gx[...] = 0
    for sl, m in winners(xpad, y, kernel, stride, dilation):
        gx[sl] += gy * m


def _max_backward_disjoint(gy, xpad, y, kernel, stride, dilation, gx):
    """max_backward for windows that do not overlap but leave input cells out (stride >
    kernel, or an odd map's last row and column).

    Each input cell then belongs to at most one window, so each tap's share is written
    into place rather than added, and the first-maximum rule needs no record of the taps
    taken: ``left`` holds the gradient not yet handed out, and a tap that takes a window's
    gradient zeroes it there. 14 passes over the data for a 2×2 window instead of 25."""
    xp = get_array_module(gy)
    gx[...] = 0
    hit = xp.empty(y.shape, dtype=bool)
    left = gy
    last = kernel[0] * kernel[1] - 1
    for t, i, j in taps(kernel):
        sl = (slice(None), *tap_slices(i, j, y.shape[1:3], stride, (1, 1)))
        xp.equal(xpad[sl], y, out=hit)
        xp.multiply(left, hit, out=gx[sl])
        if t < last:  # withhold what this tap took from the taps after it
            left = left * xp.logical_not(hit, out=hit)


def _max_backward_tiled(gy, xpad, y, kernel, stride, dilation, gx):
    """max_backward for windows that tile the input exactly (the 2×2 pool of an even map).

    The input is then a free view (C, OH, KH, OW, KW, N) of windows, so one comparison
    with the broadcast maxima marks every tap that holds its window's maximum, small
    passes over that mask keep only the first such tap, and one product writes the whole
    gradient in order. Four strided writes of the per-tap version each read back the
    cache lines they partly filled: LeNet-5's first pool at batch 256 (4.8 MB, caches
    flushed between calls) took 4.0–4.5 ms that way and 2.4–2.9 ms so, VGG-11's first
    (32 MB) 41–45 ms and 24–27 ms."""
    xp = get_array_module(gy)
    C, OH, OW, N = y.shape
    tiles = (C, OH, kernel[0], OW, kernel[1], N)
    over_taps = (slice(None), slice(None), None, slice(None), None)  # y, gy → tiles' rank
    mask = xp.equal(xpad.reshape(tiles), y[over_taps])  # a view of xpad where contiguous
    marks = mask.view(xp.uint8)  # 0/1, so "first" is a comparison
    seen = None
    for _, i, j in taps(kernel):
        here = marks[:, :, i, :, j]
        if seen is None:
            seen = here.copy()
            continue
        xp.greater(here, seen, out=here)  # this tap wins only where none before it did
        xp.bitwise_or(seen, here, out=seen)
    xp.multiply(gy[over_taps], mask, out=gx.reshape(tiles))  # a view: gx[c] is contiguous


def sum_forward(xpad, kernel, out_hw, stride, dilation=(1, 1)):
    """Window sums (C, OH, OW, N)."""
    xp = get_array_module(xpad)
    y = None
    for _, i, j in taps(kernel):
        v = xpad[(slice(None), *tap_slices(i, j, out_hw, stride, dilation))]
        y = v.copy() if y is None else xp.add(y, v, out=y)
    return y


def sum_backward(g, padded_hw, kernel, stride, dilation=(1, 1), per_tap=None):
    """Adjoint of sum_forward: every tap receives g (times per_tap(i, j) when given)."""
    xp = get_array_module(g)
    C, OH, OW, N = g.shape
    gx = xp.zeros((C, *padded_hw, N), dtype=g.dtype)
    for _, i, j in taps(kernel):
        sl = (slice(None), *tap_slices(i, j, (OH, OW), stride, dilation))
        gx[sl] += g if per_tap is None else g * per_tap(sl)
    return gx


def window_counts(valid_hw, padded_hw, offset, kernel, out_hw, stride, xp, dtype):
    """How many cells of each window lie in the region counted by the divisor.

    The region is valid_hw cells starting at ``offset`` inside the padded
    input; returns (OH, OW), used as the average-pool divisor.
    """
    mask = xp.zeros((1, *padded_hw, 1), dtype=dtype)
    mask[0, offset[0]:offset[0] + valid_hw[0], offset[1]:offset[1] + valid_hw[1], 0] = 1
    return sum_forward(mask, kernel, out_hw, stride)[0, :, :, 0]
