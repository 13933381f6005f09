"""Grouped 2-D convolution (cross-correlation) as im2col + one matrix product.

Shapes (engine layout, batch last):
  x (C, H, W, N), weight (O, C/G, KH, KW) as in PyTorch, y (O, OH, OW, N).
The three functions are the forward and the two halves of its adjoint; the
transposed convolution is built from the same three with roles swapped.
With G = 1 the products are plain 2-D GEMMs; with G > 1 one batched matmul.
"""

from __future__ import annotations

from ..backend import get_array_module
from .im2col import col2im, crop_spatial, im2col, pad_spatial


def _out_hw(padded_hw, kernel, stride, dilation):
    return tuple((n - (d * (k - 1) + 1)) // s + 1
                 for n, k, s, d in zip(padded_hw, kernel, stride, dilation))


def conv_forward(x, weight, bias, stride, pads, dilation, groups=1):
    """y = W ⋆ x + b. Returns y and the column matrix kept for backward."""
    xp = get_array_module(x)
    N = x.shape[3]
    O, Cg, KH, KW = weight.shape
    G, K = groups, Cg * KH * KW
    xpad = pad_spatial(x, pads)
    OH, OW = _out_hw(xpad.shape[1:3], (KH, KW), stride, dilation)
    cols = im2col(xpad, (KH, KW), (OH, OW), stride, dilation)  # (C, KH, KW, OH, OW, N)
    L = OH * OW * N
    if G == 1:
        y = xp.matmul(weight.reshape(O, K), cols.reshape(K, L))  # (O, L)
    else:
        y = xp.matmul(weight.reshape(G, O // G, K), cols.reshape(G, K, L))  # (G, O/G, L)
    y = y.reshape(O, OH, OW, N)
    if bias is not None:
        y += bias[:, None, None, None]
    return y, cols


def cols_product(weight, cols, groups, out_shape):
    """W · cols for columns already built: (O, OH, OW, N) without a new im2col."""
    xp = get_array_module(cols)
    O, Cg, KH, KW = weight.shape
    K, L = Cg * KH * KW, cols.size // (cols.shape[0] * KH * KW)
    if groups == 1:
        y = xp.matmul(weight.reshape(O, K), cols.reshape(K, L))  # (O, L)
    else:
        y = xp.matmul(weight.reshape(groups, O // groups, K), cols.reshape(groups, K, L))
    return y.reshape(out_shape)


def conv_grad_weight(gy, cols, weight_shape, groups=1):
    """∂E/∂W = gy · colsᵀ per group, shaped like the weight (O, C/G, KH, KW)."""
    xp = get_array_module(gy)
    O, Cg, KH, KW = weight_shape
    G, K = groups, Cg * KH * KW
    L = gy.size // O
    if G == 1:
        gW = xp.matmul(gy.reshape(O, L), cols.reshape(K, L).T)  # (O, K)
    else:
        gW = xp.matmul(gy.reshape(G, O // G, L),
                       cols.reshape(G, K, L).transpose(0, 2, 1))  # (G, O/G, K)
    return gW.reshape(weight_shape)


def conv_grad_input(gy, weight, in_hw, stride, pads, dilation, groups=1):
    """∂E/∂x = col2im(Wᵀ · gy), cropped to the unpadded input (C, H, W, N)."""
    xp = get_array_module(gy)
    O, OH, OW, N = gy.shape
    _, Cg, KH, KW = weight.shape
    G, K, L = groups, Cg * KH * KW, OH * OW * N
    if G == 1:
        gcols = xp.matmul(weight.reshape(O, K).T, gy.reshape(O, L))  # (K, L)
    else:
        gcols = xp.matmul(weight.reshape(G, O // G, K).transpose(0, 2, 1),
                          gy.reshape(G, O // G, L))  # (G, K, L)
    gcols = gcols.reshape(Cg * G, KH, KW, OH, OW, N)
    (pt, pb), (pl, pr) = pads
    padded_hw = (in_hw[0] + pt + pb, in_hw[1] + pl + pr)
    return crop_spatial(col2im(gcols, padded_hw, stride, dilation), pads)


def conv_backward(gy, weight, cols, in_hw, stride, pads, dilation, groups, need_gx, has_bias,
                  need_params=True):
    """The three gradients of conv_forward: (gx or None, gW or None, gb or None)."""
    gW = conv_grad_weight(gy, cols, weight.shape, groups) if need_params else None
    gb = gy.sum(axis=(1, 2, 3)) if (need_params and has_bias) else None
    gx = conv_grad_input(gy, weight, in_hw, stride, pads, dilation, groups) if need_gx else None
    return gx, gW, gb
