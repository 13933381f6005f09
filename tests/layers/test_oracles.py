"""The engine's kernels against naive loops, and the adjoint identities they must satisfy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import oracles
from cnnrun.layers import Context
from cnnrun.ops.layout import to_engine, to_external
from cnnrun.ops.spatial import windows
from helpers.layers import build


def run(layer, state, x_nchw, train=False):
    y, cache = layer.forward(state, to_engine(x_nchw), Context(train=train))
    return to_external(y), cache


CONV_CASES = [
    dict(out_channels=3, kernel_size=3),
    dict(out_channels=4, kernel_size=[2, 3], stride=[2, 1], padding=[1, 2], dilation=[2, 1]),
    dict(out_channels=4, kernel_size=3, groups=2, stride=2),
    dict(out_channels=4, kernel_size=3, groups=4, padding=1),  # depthwise
    dict(out_channels=2, kernel_size=4, padding="same"),  # asymmetric: 1 before, 2 after
]


@pytest.mark.parametrize("cfg", CONV_CASES, ids=range(len(CONV_CASES)))
def test_conv2d_matches_naive_loops(cfg, rng):
    layer = build("conv2d", cfg)
    C = 4 if cfg.get("groups", 1) > 1 else 2
    x = rng.normal(size=(2, C, 7, 8))
    state = layer.init_state((C, 7, 8), rng)
    y, _ = run(layer, state, x)
    pads = layer.pads()
    expected = oracles.conv2d(x, state["weight"], state["bias"], layer.strides(), pads,
                              layer.dilations(), layer.groups)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,k,s,pad", [("maxpool2d", 2, 2, 0), ("maxpool2d", 3, 2, 1),
                                          ("avgpool2d", 3, 1, 1), ("avgpool2d", 2, 2, 0)])
def test_pool_matches_naive_loops(kind, k, s, pad, rng):
    x = rng.normal(size=(2, 3, 7, 7))
    layer = build(kind, {"kernel_size": k, "stride": s, "padding": pad})
    y, _ = run(layer, {}, x)
    expected = getattr(oracles, kind)(x, k, s, pad)
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_lp_pool_matches_naive_loops(rng):
    x = rng.uniform(0.1, 2.0, size=(2, 2, 6, 6))
    y, _ = run(build("lp_pool2d", {"kernel_size": 2, "norm_type": 3}), {}, x)
    np.testing.assert_allclose(y, oracles.lp_pool2d(x, 2, 2, 3), rtol=1e-12)


@pytest.mark.parametrize("k,s,hw", [(2, 2, 7), (2, 2, 8), (3, 3, 9), (2, 3, 8), (3, 2, 7),
                                    (2, 1, 7), ((2, 3), (2, 3), (8, 9)), ((3, 2), (3, 2), (9, 5))])
def test_maxpool_backward_matches_naive_first_winner(k, s, hw, rng):
    """Overlapping windows, and disjoint ones that tile the input, leave a margin or gaps."""
    h, w = (hw, hw) if isinstance(hw, int) else hw
    x = rng.integers(0, 3, size=(2, 2, h, w)).astype(float)  # many ties on purpose
    layer = build("maxpool2d", {"kernel_size": k, "stride": s})
    y, cache = run(layer, {}, x)
    gy = rng.normal(size=y.shape)
    gx, _ = layer.backward({}, cache, to_engine(gy))
    np.testing.assert_allclose(to_external(gx), oracles.maxpool2d_backward(x, gy, k, s))


def test_maxpool_tie_sends_gradient_to_first_maximum_only():
    x = np.zeros((1, 1, 2, 2))  # a flat zero background, as in MNIST
    layer = build("maxpool2d", {"kernel_size": 2})
    _, cache = run(layer, {}, x)
    gx, _ = layer.backward({}, cache, to_engine(np.ones((1, 1, 1, 1))))
    assert to_external(gx)[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("s,p", [(1, 0), (2, 1), (3, 0)])
def test_conv_transpose_matches_naive_scatter(s, p, rng):
    layer = build("conv_transpose2d", {"out_channels": 3, "kernel_size": 3, "stride": s,
                                       "padding": p, "bias": False})
    x = rng.normal(size=(2, 2, 4, 5))
    state = layer.init_state((2, 4, 5), rng)
    y, _ = run(layer, state, x)
    np.testing.assert_allclose(y, oracles.conv_transpose2d(x, state["weight"], s, p), atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2),
       h=st.integers(4, 9), w=st.integers(4, 9), groups=st.sampled_from([1, 2]))
def test_conv_and_conv_transpose_are_adjoint(k, s, p, d, h, w, groups):
    """⟨conv(x), y⟩ = ⟨x, conv_T(y)⟩, also when (H + 2p − k) is not a multiple of the stride."""
    keff = d * (k - 1) + 1
    if keff > min(h, w) + 2 * p or p >= keff:
        return
    rng = np.random.default_rng(k * 100 + s * 10 + p)
    C, O = 2 * groups, 2 * groups
    conv = build("conv2d", {"out_channels": O, "kernel_size": k, "stride": s, "padding": p,
                            "dilation": d, "groups": groups, "bias": False})
    oh, ow = conv.output_shape((C, h, w))[1:]
    op = ((h + 2 * p - keff) % s, (w + 2 * p - keff) % s)  # restores the input size
    tconv = build("conv_transpose2d", {"out_channels": C, "kernel_size": k, "stride": s,
                                       "padding": p, "dilation": d, "groups": groups,
                                       "output_padding": list(op), "bias": False})
    W = rng.normal(size=(O, C // groups, k, k))
    x, y = rng.normal(size=(2, C, h, w)), rng.normal(size=(2, O, oh, ow))
    cx, _ = run(conv, {"weight": W}, x)
    ty, _ = run(tconv, {"weight": W}, y)
    assert ty.shape == x.shape
    np.testing.assert_allclose((cx * y).sum(), (x * ty).sum(), rtol=1e-10)


@pytest.mark.parametrize("stride, dilation", [((1, 1), (1, 1)), ((2, 1), (1, 2)), ((3, 2), (2, 1))])
def test_windows_match_a_loop_over_every_element(stride, dilation):
    """The im2col view the weight gradient copies from, element by element, on a non-contiguous
    input."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 11, 12, 10))
    xpad = base[:, 1:, ::2, 1:6]  # (3, 10, 6, 5), strided in every axis but channels
    kernel = (2, 3)
    out_hw = tuple((n - (d * (k - 1) + 1)) // s + 1
                   for n, k, s, d in zip(xpad.shape[1:3], kernel, stride, dilation))
    view = windows(xpad, kernel, out_hw, stride, dilation)
    expected = np.empty((3, *kernel, *out_hw, 5))
    for c, i, j, oh, ow, n in np.ndindex(*expected.shape):
        expected[c, i, j, oh, ow, n] = xpad[c, oh * stride[0] + i * dilation[0],
                                            ow * stride[1] + j * dilation[1], n]
    np.testing.assert_array_equal(view, expected)
    assert not view.flags.writeable  # overlapping windows: a write would change its neighbours


def test_flip_kernel_is_true_convolution(rng):
    """flip_kernel: true equals cross-correlation with the kernel rotated by 180°."""
    x = rng.normal(size=(1, 2, 6, 6))
    flipped = build("conv2d", {"out_channels": 3, "kernel_size": [2, 3], "flip_kernel": True})
    plain = build("conv2d", {"out_channels": 3, "kernel_size": [2, 3]})
    state = flipped.init_state((2, 6, 6), rng)
    rotated = {"weight": state["weight"][..., ::-1, ::-1].copy(), "bias": state["bias"]}
    np.testing.assert_allclose(run(flipped, state, x)[0], run(plain, rotated, x)[0], rtol=1e-12)


def test_conv1d_equals_conv2d_of_height_one(rng):
    x = rng.normal(size=(2, 3, 9))
    c1 = build("conv1d", {"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1})
    c2 = build("conv2d", {"out_channels": 4, "kernel_size": [1, 3], "stride": [1, 2],
                          "padding": [0, 1]})
    s1 = c1.init_state((3, 9), rng)
    s2 = {"weight": s1["weight"][:, :, None, :], "bias": s1["bias"]}
    np.testing.assert_allclose(run(c1, s1, x)[0], run(c2, s2, x[:, :, None, :])[0][:, :, 0])
