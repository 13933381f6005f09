"""The banded, multi-threaded convolution equals the whole one, band sizes and all, and its
column matrices (strided views over row shifts) are exactly im2col's, element by element.

Small test inputs keep their shifts whole, so without these tests the band
path (the one every large network takes) would go unchecked. Here the size
limits are forced down to one or two output rows per band, with two workers.
"""

import math

import numpy as np
import pytest

from cnnrun.tools.gradcheck import check_layer
from cnnrun.ops import conv as oc
from cnnrun.ops import conv_grad as ocg
from cnnrun.ops import parallel
from cnnrun.ops.shapes import conv_out_shape
from helpers.layers import EXAMPLES, build

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
    """Force im2col bands: no shifts, nothing whole, bands of `rows_bytes`, two workers."""
    def force(rows_bytes):
        monkeypatch.setattr(oc, "SHIFT_BYTES", 0)
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
    gx = ocg.conv_grad_input(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    return y, gW, gx


def _patches(x, geometry_case):
    x, w, _, stride, pads, dilation, groups = geometry_case
    return oc.Patches(oc.pad_spatial(x, pads), w.shape[2:], stride, dilation, groups)


@pytest.mark.parametrize("rows", [1, 2], ids=["1-row", "2-rows"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_bands_equal_whole(geometry, rows, banded):
    """im2col bands of one or two output rows on two workers equal the one-band forward
    from row shifts, and the whole im2col matrix's gradients."""
    case = _case(geometry)
    whole = _all_three(*case)
    x, w = case[0], case[1]
    row_bytes = 8 * w.shape[1] * case[6] * w.shape[2] * w.shape[3] * x.shape[3] * \
        _patches(x, case).out_hw[1]
    banded(rows * row_bytes + 7)  # a byte short of one more row
    y, patches = oc.conv_forward(*case[:3], *case[3:])
    assert not patches.use_shifts and patches.column_rows() == rows
    for a, b, name in zip(whole, _all_three(*case), ("y", "gW", "gx")):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[1] == (1, 1)])
def test_stride1_input_gradient_as_a_convolution_equals_col2im(geometry):
    x, w, _, stride, pads, dilation, groups = _case(geometry)
    y, _ = oc.conv_forward(x, w, None, stride, pads, dilation, groups)
    gy = np.random.default_rng(2).normal(size=y.shape)
    via_conv = ocg.conv_grad_input(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    via_col2im = ocg._col2im_grad(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    np.testing.assert_allclose(via_conv, via_col2im, rtol=1e-12, atol=1e-12)


def _backward_both_ways(case, gy):
    """conv_backward from the saved input, and the two separate gradients of the columns
    of the padded input (conv_grad_weight) and of gy (conv_grad_input)."""
    x, w, b, stride, pads, dilation, groups = case
    y, saved = ocg.conv_forward_saving(x, w, b, stride, pads, dilation, groups)
    gx, gW, gb = ocg.conv_backward(gy, w, saved, True, True)
    separate = (ocg.conv_grad_input(gy, w, x.shape[1:3], stride, pads, dilation, groups),
                oc.conv_grad_weight(gy, _patches(x, case), w.shape, groups))
    return saved, (gx, gW), separate


@pytest.mark.parametrize("bands", [None, 1, 2], ids=["shifts", "1-row", "2-rows"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_both_gradients_from_gy_columns_equal_the_separate_ones(geometry, bands, banded):
    """Where ∂E/∂x is a convolution of gy, ∂E/∂W comes from the same columns (x · colsᵀ,
    kernel flipped back), from row shifts or im2col bands; the padded input is not kept.
    Elsewhere the backward reads the padded input's columns, as before."""
    case = _case(geometry)
    x, w = case[0], case[1]
    gy = np.random.default_rng(3).normal(size=(w.shape[0], *_patches(x, case).out_hw, 3))
    if bands:
        banded(bands * 8 * w.shape[0] * w.shape[2] * w.shape[3] * x.shape[2] * 3 + 7)
    saved, (gx, gW), (gx_sep, gW_sep) = _backward_both_ways(case, gy)
    shared = ocg.input_grad_is_conv(w.shape[2:], x.shape[1:3], gy.shape[1:3], *case[3:6])
    assert (saved.x is not None) == shared and (saved._patches is None) == shared
    if shared:  # gy's columns came from the shifts, or from bands of the rows asked for
        gy_cols = oc.Patches(oc.pad_spatial(gy, ocg.adjoint_pads(w.shape[2:], *case[4:6])),
                             w.shape[2:], (1, 1), case[5], case[6])
        assert gy_cols.use_shifts == (bands is None)
        assert bands is None or gy_cols.column_rows() == bands
    np.testing.assert_allclose(gx, gx_sep, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gW, gW_sep, rtol=1e-12, atol=1e-12)


def test_gy_columns_serve_the_stride1_geometries():
    """The geometries that take both gradients from gy's columns: stride 1 with about as
    many inputs as outputs (ResNet's and VGG's 3×3 'same', 1×1), not 'valid' 5×5 (LeNet)."""
    shared = [ocg.input_grad_is_conv(k, (9, 8), conv_out_shape((9, 8), k, s, p, d), s, p, d)
              for k, s, d, p, _ in GEOMETRIES]
    assert shared == [True, False, False, False, True, True]


STRIDED = [  # kernel, stride, dilation, pads, groups: every phase shape the rule meets
    ((3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 1),   # ResNet's downsampling convolution
    ((1, 1), (2, 2), (1, 1), ((0, 0), (0, 0)), 1),   # its projection: 3 of 4 phases empty
    ((2, 3), (3, 2), (1, 1), ((0, 2), (1, 0)), 2),   # kernel shorter than the stride
    ((5, 4), (2, 3), (1, 1), ((2, 1), (0, 0)), 1),   # input rows the forward never reads
    ((3, 2), (2, 1), (1, 1), ((1, 0), (0, 1)), 3),
]


@pytest.mark.parametrize("geometry", STRIDED)
def test_strided_input_gradient_split_by_channels_equals_whole(geometry, banded):
    # Workers each add their own input channels' columns into the image; any mix-up of
    # channels, groups or bands would show against the one-piece col2im.
    x, w, _, stride, pads, dilation, groups = _case(geometry)
    y, _ = oc.conv_forward(x, w, None, stride, pads, dilation, groups)
    gy = np.random.default_rng(2).normal(size=y.shape)
    whole = ocg.conv_grad_input(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    banded(1)
    split = ocg.conv_grad_input(gy, w, x.shape[1:3], stride, pads, dilation, groups)
    assert split.shape == x.shape
    np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-12)


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


def _loop_columns(xpad, kernel, out_hw, stride, dilation, groups, r0, R):
    """The (G, R, KH·(C/G)·KW, OW·N) column matrices of output rows r0 … r0+R−1, one element
    at a time: entry [g, r, (i, c, j), (ow, n)] reads channel g·C/G + c of input row
    (r0 + r)·sh + i·dh, column ow·sw + j·dw."""
    C, _, _, N = xpad.shape
    (KH, KW), OW, Cg = kernel, out_hw[1], C // groups
    cols = np.empty((groups, R, KH, Cg, KW, OW, N))
    for g, r, i, c, j, ow, n in np.ndindex(*cols.shape):
        cols[g, r, i, c, j, ow, n] = xpad[g * Cg + c, (r0 + r) * stride[0] + i * dilation[0],
                                          ow * stride[1] + j * dilation[1], n]
    return cols.reshape(groups, R, KH * Cg * KW, OW * N)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_columns_match_a_loop_over_every_element(geometry):
    """The views the forward product reads from row shifts, for all output rows and for
    partial ranges, on a non-contiguous input. Views whose rows overlap are read-only."""
    rng = np.random.default_rng(0)
    kernel, stride, dilation, _, groups = geometry
    base = rng.normal(size=(3 * groups, 11, 20, 7))
    xpad = base[:, 1:, ::2, 1:6]  # (C, 10, 10, 5), strided in every axis but channels
    p = oc.Patches(xpad, kernel, stride, dilation, groups)
    assert p.use_shifts
    buf = np.empty(p.shift_size)
    OH = p.out_hw[0]
    for r0, R in [(0, OH), (1, OH - 1), (OH - 1, 1)]:
        cols = p.band(r0, R, buf)
        expected = _loop_columns(xpad, kernel, p.out_hw, stride, dilation, groups, r0, R)
        np.testing.assert_array_equal(cols, expected)
        assert not cols.flags.writeable or not p.shifted


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_weight_gradient_from_shifts_equals_the_im2col_one(geometry):
    """A small input's weight gradient, summed over the output rows' views of its shifts
    (vertical dilation and groups included), equals the im2col product's."""
    rng = np.random.default_rng(1)
    kernel, stride, dilation, pads, groups = geometry
    x = rng.normal(size=(2 * groups, 9, 8, 3))
    xpad = oc.pad_spatial(x, pads)
    weight_shape = (2 * groups, 2, *kernel)
    p = oc.Patches(xpad, kernel, stride, dilation, groups)
    assert p.use_shifts
    gy = rng.normal(size=(weight_shape[0], *p.out_hw, 3))
    from_shifts = oc.conv_grad_weight(gy, p, weight_shape, groups)
    p.use_shifts = False  # the banded im2col path
    from_columns = oc.conv_grad_weight(gy, p, weight_shape, groups)
    np.testing.assert_allclose(from_shifts, from_columns, rtol=1e-12, atol=1e-12)


def _blas_threads():
    from threadpoolctl import threadpool_info
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_a_pass_learns_its_thread_mode_and_gives_blas_its_threads_back(banded):
    """A model whose convolutions work in bands runs BLAS on one thread (its spinning threads
    would take the cores from the band workers); one whose matrices are all small does not
    split anything. Either way BLAS has its threads back after the pass."""
    from cnnrun.engine.model import Model
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


@pytest.mark.parametrize("rows, cols, split", [
    (5, 9, [slice(0, 5), slice(5, 9)]),  # more columns: the columns are shared
    (9, 5, [slice(0, 5), slice(5, 9)]),  # more rows: the rows are
])
def test_split_matmul_equals_numpy(rows, cols, split, banded_pass):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, rows, 7)), rng.normal(size=(2, 7, cols))
    with banded_pass:
        product = parallel.matmul(a, b)
    np.testing.assert_allclose(product, a @ b, rtol=1e-13)
    assert banded_pass.shares == [split]  # really shared by two workers
    parallel.matmul(a, b)  # outside a pass: one plain product, nothing split
    assert len(banded_pass.shares) == 1


@pytest.mark.parametrize("kernel,padding,stride,kept", [
    (3, 1, 1, 0),             # 'same': both gradients from gy's columns, x itself kept
    (5, 0, 1, 2 * 8 * 8),     # 'valid' 5×5: the (unpadded) input's columns give ∂E/∂W
    (3, 1, 2, 2 * 10 * 10),   # stride 2: the padded input
], ids=["same", "valid", "stride-2"])
def test_summary_counts_what_a_convolution_keeps(kernel, padding, stride, kept):
    """``cnnrun summary``'s memory estimate: a convolution keeps its output and, where its
    weight gradient reads the input's columns, its padded input; never a column matrix
    (they are rebuilt band by band). The estimate follows what the forward really keeps."""
    from cnnrun.config.schema import TrainConfig
    from cnnrun.engine.model import Model
    from cnnrun.tools.summary import summarize
    conv = {"type": "conv2d", "name": "c", "out_channels": 4, "kernel_size": kernel,
            "padding": padding, "stride": stride}
    model = Model([{"type": "relu"}, conv, {"type": "flatten"},
                   {"type": "linear", "out_features": 3}], (2, 8, 8))
    state = model.init(seed=0, dtype=np.float64)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 5))
    _, cache = model.forward(state, x, train=True)
    saved = cache[1]
    arrays = [a for a in (saved.x, saved._patches and saved._patches.xpad) if a is not None]
    assert len(arrays) == 1  # x, or the padded input: never both
    assert (saved.x is not None) == (kept == 0)
    assert arrays[0].size == (2 * 8 * 8 * 5 if kept == 0 else kept * 5)
    row = summarize(model, TrainConfig(batch_size=5))["layers"][1]
    assert row["kept_elements"] == math.prod(model.root.layers[1].output_shape((2, 8, 8))) + kept


CONVS = [pytest.param(*e.values, None, id=e.id) for e in EXAMPLES
         if e.values[0] in ("conv2d", "conv1d")] + [
    pytest.param("conv2d", {"out_channels": 8, "kernel_size": 3, "padding": 1}, (4, 2, 2),
                 "toeplitz", id="toeplitz"),
    pytest.param("conv2d", {"out_channels": 64, "kernel_size": 3, "padding": 1}, (64, 6, 6),
                 "winograd", id="winograd"),
    pytest.param("conv2d", {"out_channels": 2, "kernel_size": 5}, (3, 9, 9), "patches",
                 id="valid-5x5"),
]


@pytest.mark.parametrize("type_name,cfg,shape,path", CONVS)
def test_the_memory_estimate_follows_the_path_the_forward_takes(type_name, cfg, shape, path):
    """kept_elements reads the forward's own rule (conv_grad.algorithm): nothing beyond
    x is counted exactly where the forward keeps no padded input."""
    layer = build(type_name, cfg)
    rng = np.random.default_rng(0)
    state = {k: v.astype(np.float32) for k, v in layer.init_state(shape, rng).items()}
    _, saved = layer.forward(state, rng.normal(size=(*shape, 2)).astype(np.float32), None)
    assert saved.algorithm == (path or saved.algorithm)
    assert (layer.kept_elements(shape) == 0) is (saved.algorithm != "patches")
