"""The Model: shape checking on construction, deterministic init, state naming, backward skips."""

import numpy as np
import pytest
from pydantic import TypeAdapter

from cnnrun.layers import AnyLayer, ShapeError
from cnnrun.ops.layout import to_engine
from cnnrun.engine.losses import CrossEntropy
from cnnrun.engine.model import Model, flatten, unflatten
from helpers.nets import lenet

def test_lenet_counts():
    m = lenet()
    assert m.output_shape == (10,)
    assert m.n_params() == 61_706
    # conv1 6·784·25 + conv2 16·100·150 + 400·120 + 120·84 + 84·10
    assert m.macs() == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert set(m.param_shapes()) == {f"{n}.{p}" for n in ("conv1", "conv2", "fc1", "fc2", "fc3")
                                     for p in ("weight", "bias")}


def test_init_is_deterministic_and_dtype_follows_request():
    a, b = lenet().init(seed=3), lenet().init(seed=3)
    for name, arr in flatten(a).items():
        assert arr.dtype == np.float32
        np.testing.assert_array_equal(arr, flatten(b)[name])
    c = lenet().init(seed=4)
    assert not np.array_equal(flatten(a)["conv1.weight"], flatten(c)["conv1.weight"])
    assert flatten(lenet().init(seed=3, dtype=np.float64))["fc1.weight"].dtype == np.float64


def test_flatten_unflatten_round_trip():
    state = lenet().init()
    assert flatten(unflatten(flatten(state))).keys() == flatten(state).keys()


def test_first_layer_input_gradient_is_skipped_and_grads_complete():
    m = lenet()
    state = m.init()
    x = to_engine(np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32))
    y, cache = m.forward(state, x, train=True)
    _, g = CrossEntropy().value_and_grad(y, np.array([0, 1, 2, 3]))
    gx, grads = m.backward(state, cache, g)
    assert gx is None
    assert set(flatten(grads)) == set(m.param_shapes()) == m.trainable_names()


def test_shape_error_found_before_any_weight_exists():
    layers = TypeAdapter(list[AnyLayer]).validate_python(
        [{"type": "conv2d", "name": "c1", "out_channels": 4, "kernel_size": 3},
         {"type": "conv2d", "name": "c2", "out_channels": 4, "kernel_size": 7}])
    with pytest.raises(ShapeError, match=r"c2: kernel 7×7 .* input shape \(4, 4, 4\)"):
        Model(layers, (1, 6, 6))


def test_fixed_weights_from_config_are_used_and_checked():
    sobel = [[[[1, 0, -1], [2, 0, -2], [1, 0, -1]]]]
    layers = TypeAdapter(list[AnyLayer]).validate_python(
        [{"type": "conv2d", "out_channels": 1, "kernel_size": 3, "bias": False,
          "trainable": False, "weights": {"weight": sobel}}])
    m = Model(layers, (1, 5, 5))
    np.testing.assert_array_equal(m.init()["0"]["weight"], np.array(sobel, dtype=np.float32))
    assert m.trainable_names() == set()
    bad = TypeAdapter(list[AnyLayer]).validate_python(
        [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "weights": {"weight": sobel}}])
    with pytest.raises(ShapeError, match=r"weights.weight has shape \(1, 1, 3, 3\), expected \(2, 1, 3, 3\)"):
        Model(bad, (1, 5, 5)).init()


def test_relu_then_maxpool_runs_swapped_with_identical_values_and_gradients():
    """Sequential runs a max-pool before the ReLU declared ahead of it (run_order): outputs,
    parameter and input gradients are bitwise those of the declared order, ties included."""
    from cnnrun.layers import Context
    from cnnrun.layers.containers import run_order

    layers = TypeAdapter(list[AnyLayer]).validate_python([
                     {"type": "conv2d", "out_channels": 3, "kernel_size": 3},
                      {"type": "relu", "name": "r"}, {"type": "maxpool2d", "kernel_size": 2},
                      {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 3, "stride": 1},
                      {"type": "tanh"}, {"type": "maxpool2d", "kernel_size": 1}])
    model = Model(layers, (2, 9, 9))
    order = [name for name, _ in run_order(model.root.children())]
    assert order == ["0", "2", "r", "4", "3", "5", "6"]  # the ReLU pairs swap, tanh stays
    state = model.init(0, dtype=np.float64)
    x = to_engine(np.random.default_rng(0).normal(size=(4, 2, 9, 9)))
    x[:, :, :3] = -1.0  # windows that are all negative, and ties among them after the ReLU
    y, cache = model.forward(state, x, train=True)
    gy = np.random.default_rng(1).normal(size=y.shape)
    gx, grads = model.backward(state, cache, gy, need_gx=True)

    ctx, h, caches = Context(train=True), x, []
    declared = model.root.children()
    for name, layer in declared:
        h, c = layer.forward(state.get(name, {}), h, ctx)
        caches.append(c)
    g, ref_grads = gy, {}
    for (name, layer), c in zip(reversed(declared), reversed(caches)):
        g, gp = layer.backward(state.get(name, {}), c, g)
        if gp:
            ref_grads[name] = gp
    np.testing.assert_array_equal(y, h)
    np.testing.assert_array_equal(gx, g)
    np.testing.assert_array_equal(grads["0"]["weight"], ref_grads["0"]["weight"])
