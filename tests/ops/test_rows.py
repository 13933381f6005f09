"""The BLAS row reductions equal NumPy's, in both float types and on non-contiguous input."""

import numpy as np
import pytest

from cnnrun.ops.rows import channel_sums, row_dots, row_sums


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_row_reductions_equal_numpys(dtype, rtol):
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 1.0, size=(5, 3001)).astype(dtype)
    b = rng.normal(size=(5, 3001)).astype(dtype)
    for got, want in ((row_sums(a), a.astype(np.float64).sum(axis=1)),
                      (row_dots(a, b), np.einsum("ij,ij->i", a.astype(np.float64), b))):
        assert got.dtype == dtype and got.shape == (5,)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def test_channel_sums_of_a_strided_view():
    # a transposed (C, H, W, N) view: reshape must copy, not reinterpret, its memory
    x = np.random.default_rng(1).normal(size=(4, 3, 2, 5)).transpose(3, 1, 2, 0)
    np.testing.assert_allclose(channel_sums(x), x.sum(axis=(1, 2, 3)), rtol=1e-13)
