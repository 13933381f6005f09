"""Winograd's F(4×4, 3×3) equals the direct convolution: forward, both gradients, every
padding and every size modulo 4, on the workers too, at any layer.

The path is taken only with 64 maps or more, larger than the other tests' layers, so
here the threshold is lowered (``everywhere``) and the band size forced down.
"""

import numpy as np
import pytest

from cnnrun.tools.gradcheck import check_layer
from cnnrun.layers.conv import Conv2d
from cnnrun.ops import conv as oc
from cnnrun.ops import conv_grad as ocg
from cnnrun.ops import toeplitz, winograd
from cnnrun.ops.layout import to_engine, to_external
from helpers.oracles import conv2d as conv2d_oracle

PADS = [((1, 1), (1, 1)), ((0, 0), (0, 0)), ((2, 0), (1, 2)), ((2, 2), (2, 2))]
SIZES = [(8, 8), (7, 5), (3, 6), (1, 1), (4, 9)]  # every size modulo 4, a single output
CASES = [(size, pads) for size in SIZES for pads in PADS  # those an input can have
         if min(n + 2 - sum(p) for n, p in zip(size, pads)) >= 1]


@pytest.fixture
def everywhere(monkeypatch):
    monkeypatch.setattr(winograd, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(toeplitz, "MAX_BYTES", 0)  # which 1×1 and 1×2 inputs would take


def _case(size, pads, C=3, O=4, N=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    H, W = size
    x = rng.normal(size=(C, H + 2 - sum(pads[0]), W + 2 - sum(pads[1]), N)).astype(dtype)
    w = rng.normal(size=(O, C, 3, 3)).astype(dtype)
    b = rng.normal(size=O).astype(dtype)
    return x, w, b  # sized so the output is `size`


@pytest.mark.parametrize("size, pads", CASES, ids=str)
def test_forward_equals_the_direct_convolution(size, pads):
    x, w, b = _case(size, pads)
    direct, _ = oc.conv_forward(x, w, b, (1, 1), pads, (1, 1))
    y = winograd.conv(x, winograd.transform_kernel(w), b, pads)
    assert y.shape == direct.shape == (4, *size, 3) and y.flags.c_contiguous
    np.testing.assert_allclose(y, direct, rtol=1e-12, atol=1e-12)


def test_forward_equals_the_loop_oracle():
    """Against the naive sum of the notes, in NCHW, sharing no code with the engine."""
    pads = ((1, 1), (1, 1))
    x, w, b = _case((5, 6), pads, C=2, O=3, N=2)
    y = winograd.conv(x, winograd.transform_kernel(w), b, pads)
    want = conv2d_oracle(to_external(x), w, b, padding=pads)
    np.testing.assert_allclose(to_external(y), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size, pads", CASES, ids=str)
def test_gradients_equal_the_direct_ones(size, pads, everywhere):
    """conv_backward after a Winograd forward (which keeps x, not its padded copy) gives
    the im2col gradients; a padding above 2 takes ∂E/∂x from col2im."""
    x, w, b = _case(size, pads)
    y, saved = ocg.conv_forward_saving(x, w, b, (1, 1), pads, (1, 1))
    assert saved.algorithm == "winograd" and saved.x is x and saved._patches is None
    gy = np.random.default_rng(1).normal(size=y.shape)
    gx, gW, gb = ocg.conv_backward(gy, w, saved, True, True)
    patches = oc.Patches(oc.pad_spatial(x, pads), (3, 3), (1, 1), (1, 1))
    np.testing.assert_allclose(gW, oc.conv_grad_weight(gy, patches, w.shape),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, ocg._col2im_grad(gy, w, x.shape[1:3], (1, 1), pads,
                                                    (1, 1), 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, gy.sum(axis=(1, 2, 3)), rtol=1e-12)


def test_a_padding_above_two_takes_the_input_gradient_from_col2im(everywhere, monkeypatch):
    pads = ((3, 0), (0, 3))
    x, w, b = _case((4, 4), pads)
    y, saved = ocg.conv_forward_saving(x, w, b, (1, 1), pads, (1, 1))
    assert saved.algorithm == "winograd"
    gy = np.random.default_rng(2).normal(size=y.shape)
    calls = []
    original = winograd.conv
    monkeypatch.setattr(winograd, "conv", lambda *a: calls.append(1) or original(*a))
    gx, _, _ = ocg.conv_backward(gy, w, saved, True, True)
    assert not calls  # ∂E/∂x did not go through Winograd
    np.testing.assert_allclose(gx, ocg._col2im_grad(gy, w, x.shape[1:3], (1, 1), pads,
                                                    (1, 1), 1), rtol=1e-12, atol=1e-12)


def test_products_split_over_the_workers_equal_one_call(banded_pass):
    """In a pass that works in bands every product (transforms and the 36 per-position
    ones) is split over two workers: forward and ∂E/∂w equal the one-call results."""
    pads = ((1, 1), (1, 1))
    x, w, b = _case((6, 5), pads, N=5)
    gy = np.random.default_rng(3).normal(size=(4, 6, 5, 5))
    U = winograd.transform_kernel(w)
    one = winograd.conv(x, U, b, pads), winograd.grad_kernel(gy, x, pads)
    with banded_pass:
        many = winograd.conv(x, U, b, pads), winograd.grad_kernel(gy, x, pads)
    # 3 products forward, 4 for ∂E/∂w, each in two shares
    assert [len(bands) for bands in banded_pass.shares] == [2] * 7
    for a_, c in zip(one, many):
        np.testing.assert_allclose(c, a_, rtol=1e-12, atol=1e-12)


def test_the_kernel_transform_and_its_gradient_are_adjoint():
    rng = np.random.default_rng(4)
    w, gU = rng.normal(size=(5, 2, 3, 3)), rng.normal(size=(36, 5, 2))
    U = winograd.transform_kernel(w)
    assert U.shape == (36, 5, 2)
    G = np.array(winograd._G)
    np.testing.assert_allclose(U[:, 3, 1].reshape(6, 6), G @ w[3, 1] @ G.T, rtol=1e-13)
    np.testing.assert_allclose((U * gU).sum(), (w * winograd.kernel_gradient(gU)).sum(),
                               rtol=1e-12)


def test_float32_stays_float32_and_close_to_float64(everywhere):
    pads = ((1, 1), (1, 1))
    x, w, b = _case((8, 8), pads, C=32, O=8)
    y64, _ = oc.conv_forward(x, w, b, (1, 1), pads, (1, 1))
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    y, saved = ocg.conv_forward_saving(x32, w32, b32, (1, 1), pads, (1, 1))
    gx, gW, gb = ocg.conv_backward(np.ones_like(y), w32, saved, True, True)
    assert saved.algorithm == "winograd"
    assert {a.dtype for a in (y, gx, gW, gb)} == {np.dtype(np.float32)}
    np.testing.assert_allclose(y, y64, rtol=0, atol=2e-5 * np.abs(y64).max())
    assert np.abs(y - y64).max() > 1e-9 * np.abs(y64).max()  # it really ran in float32


@pytest.mark.parametrize("padding", [1, 0])
def test_a_conv2d_layer_on_the_winograd_path_passes_gradcheck(padding, everywhere):
    layer = Conv2d(type="conv2d", out_channels=3, kernel_size=3, padding=padding)
    results = check_layer(layer, (2, 6, 5))
    assert [r.name for r in results] == ["input", "bias", "weight"]
    for r in results:
        np.testing.assert_allclose(r.analytic, r.numeric, rtol=1e-6, atol=1e-7, err_msg=r.name)


RULE = [  # kernel, stride, dilation, groups, C, O: taken?
    ((3, 3), (1, 1), (1, 1), 1, 64, 64, True),
    ((3, 3), (1, 1), (1, 1), 1, 512, 256, True),
    ((3, 3), (1, 1), (1, 1), 1, 63, 64, False),   # below 64 maps the transforms cost more
    ((3, 3), (1, 1), (1, 1), 1, 64, 32, False),
    ((3, 3), (2, 2), (1, 1), 1, 64, 64, False),
    ((3, 3), (1, 1), (2, 2), 1, 64, 64, False),
    ((3, 3), (1, 1), (1, 1), 2, 64, 64, False),
    ((5, 5), (1, 1), (1, 1), 1, 64, 64, False),
    ((1, 1), (1, 1), (1, 1), 1, 64, 64, False),
]


@pytest.mark.parametrize("kernel, stride, dilation, groups, C, O, taken", RULE)
def test_which_convolutions_take_the_path(kernel, stride, dilation, groups, C, O, taken):
    assert winograd.applies(kernel, stride, dilation, groups, C, O, np) is taken
    layer = Conv2d(type="conv2d", out_channels=O, kernel_size=kernel, stride=stride,
                   dilation=dilation, groups=groups, padding=0)
    x = to_engine(np.zeros((1, C, 7, 7), np.float32))
    _, saved = layer.forward(layer.init_state((C, 7, 7), np.random.default_rng(0)), x, None)
    assert (saved.algorithm == "winograd") is taken
    if taken:  # the backward keeps x, not a padded copy, even for a 'valid' convolution
        assert layer.kept_elements((C, 7, 7)) == 0


def test_not_on_another_array_module():
    class FakeModule:
        __name__ = "cupy"
    assert not winograd.applies((3, 3), (1, 1), (1, 1), 1, 64, 64, FakeModule())


@pytest.mark.torch
@pytest.mark.parametrize("padding", [1, 0])
def test_a_64_map_layer_matches_torch(padding):
    """At its own threshold (64 maps in and out), a conv2d layer runs Winograd and gives
    torch's forward and gradients in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    layer = Conv2d(type="conv2d", out_channels=64, kernel_size=3, padding=padding)
    state = layer.init_state((64, 6, 7), rng)
    state["weight"][...] = rng.normal(size=state["weight"].shape)
    state["bias"][...] = rng.normal(size=64)
    x = rng.normal(size=(2, 64, 6, 7))
    y, saved = layer.forward(state, to_engine(x), None)
    assert saved.algorithm == "winograd"
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(state["weight"], requires_grad=True)
    bt = torch.tensor(state["bias"], requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, padding=padding)
    np.testing.assert_allclose(to_external(y), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    R = rng.normal(size=yt.shape)
    (yt * torch.from_numpy(R)).sum().backward()
    gx, grads = layer.backward(state, saved, to_engine(R))
    for ours, theirs in ((to_external(gx), xt), (grads["weight"], wt), (grads["bias"], bt)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-9)


def test_the_r_operator_after_a_winograd_forward(everywhere, monkeypatch):
    """The R-operator re-pads the x a Winograd forward keeps; its Hessian-vector product
    still equals finite differences of the (Winograd) gradient."""
    from helpers.checks import check_r_operator as check
    calls = []
    original = winograd.conv
    monkeypatch.setattr(winograd, "conv", lambda *a: calls.append(1) or original(*a))
    check("conv2d", {"out_channels": 3, "kernel_size": 3, "padding": 1}, (2, 5, 6), True)
    assert calls  # the forward and ∂E/∂x went through Winograd


def test_the_kernel_transform_split_over_workers_is_the_same(banded_pass):
    """In a pass that works in bands a large kernel transform is split over the workers
    (``parallel.matmul``); forced here on a small kernel, it gives the one-call result."""
    w = np.random.default_rng(6).normal(size=(5, 4, 3, 3))
    whole = winograd.transform_kernel(w)
    with banded_pass:
        split = winograd.transform_kernel(w)
    # the 36 transformed positions (rows) went to two workers
    assert [len(bands) for bands in banded_pass.shares] == [2]
    np.testing.assert_array_equal(split, whole)


def test_chunks_of_images_equal_one_chunk(monkeypatch):
    """With the chunk size forced down to one image, forward and ∂E/∂w are the one-chunk
    results (large inputs go image chunk by image chunk)."""
    pads = ((1, 1), (1, 1))
    x, w, b = _case((7, 6), pads, N=3)
    gy = np.random.default_rng(7).normal(size=(4, 7, 6, 3))
    U = winograd.transform_kernel(w)
    assert len(winograd.Tiles(x, pads).chunks) == 1
    one = winograd.conv(x, U, b, pads), winograd.grad_kernel(gy, x, pads)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    assert winograd.Tiles(x, pads).chunks == [slice(0, 1), slice(1, 2), slice(2, 3)]
    many = winograd.conv(x, U, b, pads), winograd.grad_kernel(gy, x, pads)
    for a, c in zip(one, many):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)
