"""The numbers worked out by hand in the notes (and where a slide is wrong, the formula)."""

import numpy as np
import pytest

from cnnrun.layers import Context
from cnnrun.ops.layout import to_engine, to_external
from helpers.layers import build

SLICE = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)


def forward(layer, x2d, state=None):
    y, cache = layer.forward(state or {}, to_engine(x2d[None, None]), Context())
    return y, cache


@pytest.mark.parametrize("kind,cfg,expected", [
    ("maxpool2d", {}, [[6, 8], [3, 4]]),
    ("avgpool2d", {}, [[3.25, 5.25], [2, 2]]),
    # One lecture slide prints 8 top right; ((1/4)(2⁵+4⁵+7⁵+8⁵))^(1/5) is 6.614.
    ("lp_pool2d", {"norm_type": 5}, [[4.865, 6.614], [2.384, 3.164]]),
])
def test_pooling_values_follow_their_formulas(kind, cfg, expected):
    y, _ = forward(build(kind, {"kernel_size": 2, "stride": 2, **cfg}), SLICE)
    np.testing.assert_allclose(to_external(y)[0, 0], expected, atol=5e-4)


def test_overlapping_max_pool_windows_accumulate_gradients():
    x = np.array([[1, 2, 3, 1], [4, 5, 6, 1], [7, 8, 9, 1]], dtype=float)
    layer = build("maxpool2d", {"kernel_size": 2, "stride": 1})
    y, cache = forward(layer, x)
    gx, _ = layer.backward({}, cache, np.ones_like(y))
    assert to_external(gx)[0, 0].tolist() == [[0, 0, 0, 0], [0, 1, 2, 0], [0, 1, 2, 0]]


def test_conv_worked_example_cross_correlation():
    layer = build("conv2d", {"out_channels": 1, "kernel_size": 2})
    state = {"weight": np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), "bias": np.zeros(1)}
    x = np.arange(1, 10, dtype=float).reshape(3, 3)
    y, cache = forward(layer, x, state)
    assert to_external(y)[0, 0].tolist() == [[37, 47], [67, 77]]
    gy = to_engine(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]))
    gx, grads = layer.backward(state, cache, gy)
    assert grads["weight"][0, 0].tolist() == [[370, 470], [670, 770]]
    assert to_external(gx)[0, 0].tolist() == [[10, 40, 40], [60, 200, 160], [90, 240, 160]]
    assert grads["bias"].tolist() == [100]


def test_scaled_tanh_maps_plus_minus_one_to_about_plus_minus_one():
    y, _ = build("scaled_tanh", {}).forward({}, np.array([[-1.0, 1.0]]), Context())
    np.testing.assert_allclose(y, [[-1.0, 1.0]], atol=2e-4)


def test_sigmoid_slope():
    y, _ = build("sigmoid", {"slope": 2.0}).forward({}, np.array([[0.5]]), Context())
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-1.0)), rtol=1e-14)


def test_upsample_zero_insertion():
    y, _ = build("upsample2d", {"scale_factor": 2, "mode": "zeros"}).forward(
        {}, to_engine(np.array([[[[1.0, 2.0], [3.0, 4.0]]]])), Context())
    assert to_external(y)[0, 0].tolist() == [[1, 0, 2], [0, 0, 0], [3, 0, 4]]
