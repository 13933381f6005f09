"""Shape arithmetic, written once and used by every layer, summary and test.

All sizes are per spatial axis. ``pad`` is a (before, after) pair so that
asymmetric 'same' padding and Caffe-style ceil-mode windows use one rule.
"""

from __future__ import annotations

import math


def ntuple(v, n: int) -> tuple[int, ...]:
    """A config's int-or-tuple as one value per spatial axis (``kernel_size: 3`` → (3, 3))."""
    return (v,) * n if isinstance(v, int) else tuple(v)


def effective_kernel(k: int, d: int = 1) -> int:
    """Extent of a dilated kernel: d·(k−1)+1."""
    return d * (k - 1) + 1


def conv_out_size(n: int, k: int, s: int = 1, pad: tuple[int, int] = (0, 0), d: int = 1,
                  ceil_mode: bool = False) -> int:
    """Output length of a sliding window: ⌊(n + p0 + p1 − d(k−1) − 1)/s⌋ + 1.

    With ``ceil_mode`` the division rounds up, except that the last window must
    start inside the input or the leading padding (PyTorch's and Caffe's rule).
    """
    span = n + pad[0] + pad[1] - effective_kernel(k, d)
    if span < 0:
        return 0
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + pad[0]:
        out -= 1
    return out


def conv_out_shape(in_sizes, kernel, stride, pads, dilation) -> tuple[int, ...]:
    """``conv_out_size`` on every spatial axis; ``pads`` holds a (before, after) pair per axis."""
    return tuple(conv_out_size(n, k, s, p, d)
                 for n, k, s, p, d in zip(in_sizes, kernel, stride, pads, dilation))


def same_padding(k: int, d: int = 1) -> tuple[int, int]:
    """Padding that keeps the size at stride 1; the extra pixel goes after (as PyTorch)."""
    total = effective_kernel(k, d) - 1
    return total // 2, total - total // 2


def conv_transpose_out_size(n: int, k: int, s: int = 1, p: int = 0, d: int = 1,
                            output_padding: int = 0) -> int:
    """Output length of a transposed convolution: (n−1)s − 2p + d(k−1) + output_padding + 1."""
    return (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1


def window_padding(n: int, k: int, s: int, pad: tuple[int, int], d: int, out: int) -> tuple[int, int]:
    """Padding actually needed so that ``out`` windows fit (adds the ceil-mode overhang after)."""
    needed = (out - 1) * s + effective_kernel(k, d)
    return pad[0], max(pad[1], needed - n - pad[0])
