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
from cnnrun.ops.im2col import im2col
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


def test_columns_are_whole_exactly_up_to_the_limit(monkeypatch):
    """Up to WHOLE_BYTES the whole column matrix is built (and held for the backward pass),
    equal to im2col; one byte less and the convolution works in bands."""
    x, w, b, stride, pads, dilation, groups = _case(GEOMETRIES[0])
    column_bytes = 3 * 9 * 9 * 8 * 3 * 8  # K · OH · OW · N · 8 bytes
    monkeypatch.setattr(oc, "WHOLE_BYTES", column_bytes)
    patches = oc.conv_forward(x, w, b, stride, pads, dilation)[1]
    rebuilt = im2col(oc.pad_spatial(x, pads), w.shape[2:], patches.out_hw, stride, dilation)
    np.testing.assert_array_equal(patches.cols, rebuilt)
    monkeypatch.setattr(oc, "WHOLE_BYTES", column_bytes - 1)
    assert oc.conv_forward(x, w, b, stride, pads, dilation)[1].cols is None


def _blas_threads():
    from threadpoolctl import threadpool_info
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_a_pass_learns_its_thread_mode_and_gives_blas_its_threads_back(banded):
    """A model whose convolutions work in bands runs BLAS on one thread (its spinning threads
    would take the cores from the band workers); one whose matrices are all small does not
    split anything. Either way BLAS has its threads back after the pass."""
    from cnnrun.model import Model
    model = Model([{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                   {"type": "flatten"}, {"type": "linear", "out_features": 3}], (2, 8, 8))
    state = model.init(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 5))
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=2, user_api="blas"):
        y_whole, _ = model.forward(state, x, train=True)
        assert model._thread_modes[5].bands is False
        banded(1)
        y_banded, cache = model.forward(state, x, train=True)
        assert model._thread_modes[5].bands is True
        model.backward(state, cache, np.ones_like(y_banded))
        assert set(_blas_threads()) == {2}
    np.testing.assert_allclose(y_banded, y_whole, rtol=1e-12)


def test_split_matmul_equals_numpy(monkeypatch):
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    monkeypatch.setattr(parallel, "MATMUL_SPLIT_MACS", 1)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 5, 7)), rng.normal(size=(2, 7, 9))
    shares = []
    real_map = parallel.map_bands
    monkeypatch.setattr(parallel, "map_bands",
                        lambda work, bands, *rest: shares.append(bands) or
                        real_map(work, bands, *rest))
    mode = parallel.ThreadMode()
    mode.bands = True
    with parallel.engine_threads(mode):
        split = parallel.matmul(a, b)
    np.testing.assert_allclose(split, a @ b, rtol=1e-13)
    assert shares == [[slice(0, 5), slice(5, 9)]]  # the columns really went to two workers
    parallel.matmul(a, b)  # outside a pass: one plain product, nothing split
    assert len(shares) == 1


@pytest.mark.parametrize("whole_limit", [1 << 30, 0])
def test_summary_counts_columns_exactly_when_the_engine_holds_them(whole_limit, monkeypatch):
    """``cnnrun summary``'s memory estimate and the engine apply the same whole_columns."""
    from cnnrun.config.schema import TrainConfig
    from cnnrun.model import Model
    from cnnrun.summary import summarize
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    monkeypatch.setattr(oc, "BAND_BYTES", 1 << 12)
    monkeypatch.setattr(oc, "WHOLE_BYTES", whole_limit)
    model = Model([{"type": "conv2d", "name": "c", "out_channels": 4, "kernel_size": 3},
                   {"type": "flatten"}, {"type": "linear", "out_features": 3}], (2, 8, 8))
    train = TrainConfig(batch_size=5, dtype="float64")
    rows = summarize(model, train)
    columns = 2 * 9 * 6 * 6  # C·KH·KW × OH·OW per sample
    assert rows["layers"][0]["column_elements"] == columns
    state = model.init(seed=0, dtype=np.float64)
    _, cache = model.forward(state, np.zeros((2, 8, 8, 5)), train=True)
    held = cache[0][0].cols is not None
    assert held == (whole_limit > 0)
    estimate = summarize(model, train)["memory"]["activations_bytes"]
    monkeypatch.setattr(oc, "WHOLE_BYTES", 0)
    baseline = summarize(model, train)["memory"]["activations_bytes"]
    assert estimate - baseline == (columns * 5 * 8 if held else 0)
