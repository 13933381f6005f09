"""The spatial helpers that convolution and pooling share, against NumPy's own padding."""

import numpy as np
import pytest

from cnnrun.ops.spatial import crop_spatial, pad_spatial

PADS = [((0, 0), (0, 0)), ((1, 1), (1, 1)), ((2, 0), (0, 3)), ((0, 1), (2, 0)), ((4, 4), (4, 4))]


@pytest.mark.parametrize("pads", PADS)
@pytest.mark.parametrize("value", [0.0, -np.inf, 2.5])
def test_pad_spatial_is_numpys_constant_pad(pads, value):
    # pad_spatial fills only the border strips of an uninitialised array: every strip
    # (top, bottom, left, right, and the corners they share) must hold the value.
    x = np.random.default_rng(0).normal(size=(3, 5, 4, 2)).astype(np.float32)
    got = pad_spatial(x, pads, value)
    want = np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=value)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(crop_spatial(got, pads), x)
