"""Per-row reductions of a (C, M) matrix on BLAS: batch norm's statistics, bias gradients.

NumPy's ``sum(axis=1)`` and ``einsum('ij,ij->i')`` run one core at about one
element per cycle; the same reductions as matrix-vector products stream at
memory speed on BLAS's threads. On ResNet-20's first-stage activations
(16 × 131,072 floats) a row sum took 0.19 ms instead of 0.75, and a row of dot
products 0.23 ms instead of 0.68. BLAS accumulates in blocks rather than
pairwise; on rows of 131,072 values near 1000 the relative error was 1.1e-7
against NumPy's 5e-8, both far below float32's use here.
"""

from __future__ import annotations

from .backend import get_array_module


def row_sums(a):
    """Σ_j a[i, j] per row of a 2-D array: (C,)."""
    xp = get_array_module(a)
    return xp.matmul(a, xp.ones(a.shape[1], dtype=a.dtype))


def row_dots(a, b):
    """Σ_j a[i, j]·b[i, j] per row of two 2-D arrays of one shape: (C,)."""
    xp = get_array_module(a)
    return xp.matmul(a[:, None, :], b[:, :, None])[:, 0, 0]  # (C, 1, M) @ (C, M, 1)


def channel_sums(a):
    """Σ over every axis but the first (a bias gradient): (C,)."""
    return row_sums(a.reshape(a.shape[0], -1))  # (C, everything else); a copy if a is a view
