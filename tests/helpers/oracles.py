"""Deliberately naive loop implementations, in NCHW, to check the engine against.

Written from the index sums of the notes, one output element at a time; slow,
obvious, and sharing no code with the engine.
"""

import math

import numpy as np


def conv2d(x, w, b=None, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
    N, C, H, W = x.shape
    O, Cg, KH, KW = w.shape
    (pt, pb), (pl, pr) = padding
    xp = np.zeros((N, C, H + pt + pb, W + pl + pr), dtype=x.dtype)
    xp[:, :, pt:pt + H, pl:pl + W] = x
    sh, sw = stride
    dh, dw = dilation
    OH = (H + pt + pb - dh * (KH - 1) - 1) // sh + 1
    OW = (W + pl + pr - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((N, O, OH, OW), dtype=x.dtype)
    og = O // groups
    for n in range(N):
        for o in range(O):
            g = o // og
            for i in range(OH):
                for j in range(OW):
                    acc = 0.0 if b is None else b[o]
                    for c in range(Cg):
                        for u in range(KH):
                            for v in range(KW):
                                acc += w[o, c, u, v] * xp[n, g * Cg + c, i * sh + u * dh,
                                                          j * sw + v * dw]
                    y[n, o, i, j] = acc
    return y


def pool2d(x, k, s, reduce, pad=0, pad_value=0.0):
    """Window reduction with symmetric padding and floor sizes."""
    N, C, H, W = x.shape
    xp = np.full((N, C, H + 2 * pad, W + 2 * pad), pad_value, dtype=x.dtype)
    xp[:, :, pad:pad + H, pad:pad + W] = x
    OH = (H + 2 * pad - k) // s + 1
    OW = (W + 2 * pad - k) // s + 1
    y = np.zeros((N, C, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    y[n, c, i, j] = reduce(xp[n, c, i * s:i * s + k, j * s:j * s + k])
    return y


def maxpool2d(x, k, s, pad=0):
    return pool2d(x, k, s, np.max, pad, -np.inf)


def avgpool2d(x, k, s, pad=0):
    return pool2d(x, k, s, np.mean, pad, 0.0)


def lp_pool2d(x, k, s, p):
    return pool2d(x, k, s, lambda w: np.mean(w ** p) ** (1.0 / p))


def maxpool2d_backward(x, gy, k, s):
    """First maximum of each window (row-major) receives the window's gradient. k and s are
    an int or a (rows, columns) pair."""
    (kh, kw), (sh, sw) = [(a, a) if isinstance(a, int) else a for a in (k, s)]
    gx = np.zeros_like(x)
    N, C, OH, OW = gy.shape
    for n in range(N):
        for c in range(C):
            for i in range(OH):
                for j in range(OW):
                    win = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    u, v = np.unravel_index(np.argmax(win), win.shape)
                    gx[n, c, i * sh + u, j * sw + v] += gy[n, c, i, j]
    return gx


def conv_transpose2d(x, w, stride=1, padding=0):
    """Scatter form: each input pixel adds its kernel-weighted copy to the output."""
    N, C, H, W = x.shape
    _, O, KH, KW = w.shape
    full = np.zeros((N, O, (H - 1) * stride + KH, (W - 1) * stride + KW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    full[n, :, i * stride:i * stride + KH, j * stride:j * stride + KW] += \
                        x[n, c, i, j] * w[c]
    p = padding
    return full[:, :, p:full.shape[2] - p, p:full.shape[3] - p]


def receptive_support(mask_2d):
    """(rows, cols) extent of the non-zero entries of a 2-D array."""
    rows, cols = np.nonzero(mask_2d)
    if rows.size == 0:
        return (0, 0), (math.nan, math.nan)
    return (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1), \
        ((rows.max() + rows.min()) / 2, (cols.max() + cols.min()) / 2)
