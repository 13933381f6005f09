"""Convolutions of maps of a few pixels as Toeplitz products equal the direct convolution:
forward and both gradients, every geometry such a map can have, on the workers too.

The Toeplitz matrix is also checked column by column against the convolution of unit
inputs, which is what it is by definition.
"""

import numpy as np
import pytest

from cnnrun.tools.gradcheck import check_layer
from cnnrun.layers.conv import Conv2d
from cnnrun.ops.layout import to_external
from cnnrun.ops import conv as oc
from cnnrun.ops import conv_grad as ocg
from cnnrun.ops import toeplitz
from helpers.oracles import conv2d as conv2d_oracle

GEOMETRIES = [  # in_hw, kernel, stride, pads, dilation
    ((2, 2), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),  # VGG's last stage on CIFAR
    ((1, 1), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((1, 2), (3, 3), (1, 1), ((2, 0), (1, 2)), (1, 1)),  # asymmetric padding
    ((2, 2), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1)),  # strided
    ((2, 2), (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),  # dilated
    ((3, 3), (5, 5), (1, 1), ((2, 2), (2, 2)), (1, 1)),
    ((2, 3), (5, 3), (1, 2), ((2, 1), (0, 1)), (1, 1)),
]


def _weights(in_hw, kernel, C=3, O=4, N=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(C, *in_hw, N)), rng.normal(size=(O, C, *kernel)),
            rng.normal(size=O))


@pytest.mark.parametrize("in_hw, kernel, stride, pads, dilation", GEOMETRIES, ids=str)
def test_the_rule_takes_these_geometries(in_hw, kernel, stride, pads, dilation):
    assert toeplitz.applies(in_hw, kernel, stride, pads, dilation, 1, 3, 4, 8)


@pytest.mark.parametrize("in_hw, kernel, stride, pads, dilation", GEOMETRIES, ids=str)
def test_the_matrix_is_the_convolution_of_unit_inputs(in_hw, kernel, stride, pads, dilation):
    """Column (q, c) of T(w) is the convolution of the input that is 1 at channel c,
    position q and 0 elsewhere: T(w) is built from the definition, with im2col."""
    C, O = 3, 4
    _, w, _ = _weights(in_hw, kernel, C, O)
    Q = int(np.prod(in_hw))
    # units (C, H, W, Q·C): image k is the unit input of column k = q·C + c
    units = np.eye(Q * C).reshape(Q * C, Q, C).transpose(2, 1, 0).reshape(C, *in_hw, Q * C)
    y, _ = oc.conv_forward(units, w, None, stride, pads, dilation)  # (O, OH, OW, Q·C)
    want = y.reshape(O, -1, Q * C).transpose(1, 0, 2).reshape(-1, Q * C)  # rows (p, o)
    plan = toeplitz.Toeplitz(w, in_hw, stride, pads, dilation)
    np.testing.assert_array_equal(plan.matrix, want)


@pytest.mark.parametrize("in_hw, kernel, stride, pads, dilation", GEOMETRIES, ids=str)
def test_forward_and_gradients_equal_the_direct_ones(in_hw, kernel, stride, pads, dilation):
    x, w, b = _weights(in_hw, kernel)
    y, saved = ocg.conv_forward_saving(x, w, b, stride, pads, dilation)
    assert saved.algorithm == "toeplitz" and saved.x is x and saved._patches is None
    direct, patches = oc.conv_forward(x, w, b, stride, pads, dilation)
    assert y.shape == direct.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)
    gy = np.random.default_rng(1).normal(size=y.shape)
    gx, gW, gb = ocg.conv_backward(gy, w, saved, True, True)
    assert gx.shape == x.shape and gx.flags.c_contiguous
    np.testing.assert_allclose(gW, oc.conv_grad_weight(gy, patches, w.shape),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, ocg.conv_grad_input(gy, w, in_hw, stride, pads, dilation),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, gy.sum(axis=(1, 2, 3)), rtol=1e-12)


def test_forward_equals_the_loop_oracle():
    """Against the naive sum of the notes, in NCHW, sharing no code with the engine."""
    pads = ((1, 1), (1, 1))
    x, w, b = _weights((2, 2), (3, 3), C=5, O=6, N=2)
    y = toeplitz.Toeplitz(w, (2, 2), (1, 1), pads, (1, 1)).forward(x, b)
    want = conv2d_oracle(to_external(x), w, b, padding=pads)
    np.testing.assert_allclose(to_external(y), want, rtol=1e-12, atol=1e-12)


def test_products_split_over_the_workers_equal_one_call(banded_pass):
    """In a pass that works in bands the three products are split over two workers
    (parallel.matmul): the results are the one-call ones."""
    pads = ((1, 1), (1, 1))
    x, w, b = _weights((2, 2), (3, 3), C=8, O=8, N=6)
    gy = np.random.default_rng(2).normal(size=(8, 2, 2, 6))
    plan = toeplitz.Toeplitz(w, (2, 2), (1, 1), pads, (1, 1))
    one = plan.forward(x, b), *plan.backward(gy, x)
    with banded_pass:
        many = plan.forward(x, b), *plan.backward(gy, x)
    assert [len(bands) for bands in banded_pass.shares] == [2, 2, 2]
    for a, c in zip(one, many):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)


def test_float32_stays_float32_and_close_to_float64():
    pads = ((1, 1), (1, 1))
    x, w, b = _weights((2, 2), (3, 3), C=16, O=8)
    y64, _ = oc.conv_forward(x, w, b, (1, 1), pads, (1, 1))
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    y, saved = ocg.conv_forward_saving(x32, w32, b32, (1, 1), pads, (1, 1))
    gx, gW, gb = ocg.conv_backward(np.ones_like(y), w32, saved, True, True)
    assert saved.algorithm == "toeplitz" and saved.toeplitz.matrix.dtype == np.float32
    assert {a.dtype for a in (y, gx, gW, gb)} == {np.dtype(np.float32)}
    np.testing.assert_allclose(y, y64, rtol=0, atol=2e-5 * np.abs(y64).max())


@pytest.mark.parametrize("padding, size", [(1, (2, 2)), (2, (1, 2))])
def test_a_conv2d_layer_on_the_toeplitz_path_passes_gradcheck(padding, size):
    layer = Conv2d(type="conv2d", out_channels=3, kernel_size=3, padding=padding)
    results = check_layer(layer, (2, *size))
    assert [r.name for r in results] == ["input", "bias", "weight"]
    for r in results:
        np.testing.assert_allclose(r.analytic, r.numeric, rtol=1e-6, atol=1e-7, err_msg=r.name)


@pytest.mark.parametrize("in_hw, kernel, groups, channels, taken", [
    ((2, 2), (3, 3), 1, 512, True),     # 4 pixels ≤ 4/9 of 9 taps; T(w) 16 MB
    ((3, 3), (3, 3), 1, 64, False),     # 9 pixels: more multiplications than Winograd
    ((4, 4), (5, 5), 1, 64, False),     # 16 > 4/9 of 25
    ((3, 3), (5, 5), 1, 64, True),      # 9 ≤ 11.1
    ((2, 2), (3, 3), 2, 64, False),     # grouped
    ((2, 2), (3, 3), 1, 2048, False),   # T(w) would be 256 MB
    ((8, 8), (1, 1), 1, 64, False),     # a 1×1 convolution is a plain product already
])
def test_the_rule(in_hw, kernel, groups, channels, taken):
    pads = tuple((k // 2, k // 2) for k in kernel)
    assert toeplitz.applies(in_hw, kernel, (1, 1), pads, (1, 1), groups, channels, channels,
                            4) is taken


def test_not_on_a_gpu():
    class FakeCupy:  # any array module but NumPy
        __name__ = "cupy"
    assert not toeplitz.applies((2, 2), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1, 8, 8,
                                4, FakeCupy())


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_the_r_operator_after_a_toeplitz_forward(train, monkeypatch):
    """The Hessian-vector product through a layer on the Toeplitz path equals finite
    differences of its gradient."""
    from helpers.checks import check_r_operator as check
    calls = []
    original = toeplitz.Toeplitz.forward
    monkeypatch.setattr(toeplitz.Toeplitz, "forward",
                        lambda self, *a: calls.append(1) or original(self, *a))
    check("conv2d", {"out_channels": 3, "kernel_size": 3, "padding": 1}, (2, 2, 2), train)
    assert calls  # the forward went through the Toeplitz product
