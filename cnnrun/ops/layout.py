"""The engine's memory layout: batch last.

Outside, arrays follow PyTorch (N, C, H, W). Inside, the batch axis moves to
the end, (C, H, W, N): im2col then copies whole batches per tap, and the
convolution's matrix product lands directly in (O, OH, OW, N) with no
transpose; a flattened activation is (F, N) and a linear layer is W @ x.
Parameters keep PyTorch's layouts (OIHW, [out, in]) so checkpoints interoperate.
"""

from __future__ import annotations

from .backend import get_array_module


def to_engine(x):
    """(N, ...) → contiguous (..., N)."""
    xp = get_array_module(x)
    return xp.ascontiguousarray(xp.moveaxis(x, 0, -1))


def to_external(y):
    """(..., N) → contiguous (N, ...)."""
    xp = get_array_module(y)
    return xp.ascontiguousarray(xp.moveaxis(y, -1, 0))
