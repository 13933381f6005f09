"""Every registered layer's backward equals central finite differences (float64)."""

import numpy as np
import pytest

from cnnrun.tools.gradcheck import check_layer
from helpers.layers import EXAMPLES, build

POSITIVE = {"lp_pool2d"}  # x^p needs x > 0


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_gradients_match_finite_differences(type_name, cfg, shape, train):
    layer = build(type_name, cfg)
    results = check_layer(layer, shape, train=train, positive=type_name in POSITIVE)
    assert results[0].name == "input"
    for r in results:
        np.testing.assert_allclose(r.analytic, r.numeric, rtol=1e-6, atol=1e-7,
                                   err_msg=f"{type_name} gradient of {r.name}")


def test_gradcheck_detects_a_wrong_backward():
    """The checker itself must fail on a wrong gradient (here: a sign error)."""
    layer = build("tanh", {})
    original = type(layer).df
    try:
        type(layer).df = lambda self, xp, x, y: -(1 - y * y)
        results = check_layer(layer, (3,))
        assert results[0].max_rel_error > 0.5
    finally:
        type(layer).df = original


@pytest.mark.parametrize("type_name", ["conv2d", "linear", "batchnorm2d"])
def test_frozen_layer_yields_no_parameter_gradients(type_name):
    cfg, shape = {"conv2d": ({"out_channels": 2, "kernel_size": 3}, (2, 4, 4)),
                  "linear": ({"out_features": 2}, (3,)),
                  "batchnorm2d": ({}, (2, 3, 3))}[type_name]
    layer = build(type_name, {**cfg, "trainable": False})
    results = check_layer(layer, shape)
    assert [r.name for r in results] == ["input"]
    np.testing.assert_allclose(results[0].analytic, results[0].numeric, rtol=1e-6, atol=1e-7)


def test_frozen_container_freezes_its_children():
    seq = build("sequential", {"trainable": False, "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3},
        {"type": "residual", "body": [{"type": "conv2d", "out_channels": 2, "kernel_size": 1}]}]})
    assert not seq.has_trainable()
    assert not seq.layers[1].body[0].trainable
