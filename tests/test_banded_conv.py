"""The banded, multi-threaded convolution equals the whole-matrix one, band sizes and all.

Small test inputs keep their columns whole, so without these tests the band
path (the one every large network takes) would go unchecked. Here the size
limits are forced down to one or two output rows per band, with two workers.
"""

import numpy as np
import pytest

from cnnrun.gradcheck import check_layer
from cnnrun.ops import conv as oc
from cnnrun.ops import parallel
from conftest import EXAMPLES, build

GEOMETRIES = [  # kernel, stride, dilation, pads, groups
    ((3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 1),
    ((5, 5), (1, 1), (1, 1), ((0, 0), (0, 0)), 1),
    ((3, 2), (2, 1), (1, 2), ((1, 0), (0, 1)), 1),
    ((3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 2),
    ((1, 1), (1, 1), (1, 1), ((0, 0), (0, 0)), 1),
    ((2, 2), (1, 1), (2, 2), ((2, 1), (1, 2)), 3),
]


@pytest.fixture
def banded(monkeypatch):
    """Force bands: nothing kept whole, bands of `rows` output rows, two workers."""
    def force(rows_bytes):
        monkeypatch.setattr(oc, "WHOLE_BYTES", 0)
        monkeypatch.setattr(oc, "BAND_BYTES", rows_bytes)
        monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    return force


def _case(geometry, seed=0):
    kernel, stride, dilation, pads, groups = geometry
    rng = np.random.default_rng(seed)
    C, O, N = 3 * groups, 2 * groups, 3
    x = rng.normal(size=(C, 9, 8, N))
    w = rng.normal(size=(O, C // groups, *kernel))
    b = rng.normal(size=O)
    return x, w, b, stride, pads, dilation, groups


def _all_three(x, w, b, stride, pads, dilation, groups):
    y, patches = oc.conv_forward(x, w, b, stride, pads, dilation, groups)
    gy = np.random.default_rng(1).normal(size=y.shape).astype(y.dtype)
    gW = oc.conv_grad_weight(gy, patches, w.shape, groups)
    gx = oc.conv_grad_input(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    return y, gW, gx


@pytest.mark.parametrize("rows", [1, 2.5], ids=["1-row", "2-rows"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_bands_equal_whole(geometry, rows, banded):
    case = _case(geometry)
    whole = _all_three(*case)
    x, w = case[0], case[1]
    row_bytes = w.shape[1] * case[6] * w.shape[2] * w.shape[3] * x.shape[3] * 8 * \
        oc.Patches(oc.pad_spatial(x, case[4]), w.shape[2:], case[3], case[5]).out_hw[1]
    banded(int(rows * row_bytes))
    y, patches = oc.conv_forward(*case[:3], *case[3:])
    assert len(patches.bands) > 1 and patches.cols is None
    for a, b, name in zip(whole, _all_three(*case), ("y", "gW", "gx")):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=name)
    assert patches.rows == int(rows)


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[1] == (1, 1)])
def test_stride1_input_gradient_as_a_convolution_equals_col2im(geometry):
    x, w, _, stride, pads, dilation, groups = _case(geometry)
    y, _ = oc.conv_forward(x, w, None, stride, pads, dilation, groups)
    gy = np.random.default_rng(2).normal(size=y.shape)
    via_conv = oc.conv_grad_input(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    via_col2im = oc._col2im_grad(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    np.testing.assert_allclose(via_conv, via_col2im, rtol=1e-12, atol=1e-12)


CONV_EXAMPLES = [e for e in EXAMPLES
                 if e.values[0] in ("conv2d", "conv1d", "conv_transpose2d", "combine_maps")]


@pytest.mark.parametrize("type_name,cfg,shape", CONV_EXAMPLES)
def test_banded_gradients_match_finite_differences(type_name, cfg, shape, banded):
    banded(1)
    for r in check_layer(build(type_name, cfg), shape):
        np.testing.assert_allclose(r.analytic, r.numeric, rtol=1e-6, atol=1e-7,
                                   err_msg=f"{type_name} gradient of {r.name}")


def test_float32_bands_stay_float32(banded):
    banded(1)
    x, w, b, *geo = _case(GEOMETRIES[0])
    y, gW, gx = _all_three(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32),
                           *geo)
    assert y.dtype == gW.dtype == gx.dtype == np.float32
