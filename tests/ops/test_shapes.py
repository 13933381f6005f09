"""The shape rules equal what forward computes, for every layer and across random geometries."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnrun.layers import Context, ShapeError
from cnnrun.ops.layout import to_engine
from helpers.layers import EXAMPLES, build


def forward_shape(layer, shape, batch=3):
    rng = np.random.default_rng(0)
    state = layer.init_state(shape, rng)
    x = to_engine(rng.uniform(0.5, 1.0, (batch, *shape)))
    y, _ = layer.forward(state, x, Context(train=True, rng=rng))
    assert y.shape[-1] == batch, "the batch axis must stay last"
    return y.shape[:-1]


@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_shape_rule_equals_forward(type_name, cfg, shape):
    layer = build(type_name, cfg)
    assert forward_shape(layer, shape) == layer.output_shape(shape)


@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_param_shapes_equal_initialised_state(type_name, cfg, shape):
    from cnnrun.engine.model import flatten
    layer = build(type_name, cfg)
    state = flatten(layer.init_state(shape, np.random.default_rng(0)))
    expected = {**layer.param_shapes(shape), **layer.buffer_shapes(shape)}
    assert {k: v.shape for k, v in state.items()} == {k: tuple(v) for k, v in expected.items()}


geometry = dict(k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
                d=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9))


@settings(max_examples=60, deadline=None)
@given(**geometry, groups=st.sampled_from([1, 2]))
def test_conv2d_shape_property(k, s, p, d, h, w, groups):
    layer = build("conv2d", {"out_channels": 2 * groups, "kernel_size": k, "stride": s,
                             "padding": p, "dilation": d, "groups": groups})
    keff = d * (k - 1) + 1
    if keff > min(h, w) + 2 * p:
        with pytest.raises(ShapeError, match="does not fit"):
            layer.output_shape((2 * groups, h, w))
        return
    expected = (2 * groups, (h + 2 * p - keff) // s + 1, (w + 2 * p - keff) // s + 1)
    assert layer.output_shape((2 * groups, h, w)) == expected
    assert forward_shape(layer, (2 * groups, h, w), batch=2) == expected


@settings(max_examples=60, deadline=None)
@given(**geometry, kind=st.sampled_from(["maxpool2d", "avgpool2d"]), ceil=st.booleans())
def test_pool_shape_property(k, s, p, d, h, w, kind, ceil):
    if p > k // 2:
        p = k // 2
    cfg = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
    if kind == "maxpool2d":
        cfg["dilation"] = d
    layer = build(kind, cfg)
    try:
        rule = layer.output_shape((1, h, w))
    except ShapeError:
        return
    assert forward_shape(layer, (1, h, w), batch=2) == rule


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2), h=st.integers(1, 6),
       op=st.integers(0, 2))
def test_conv_transpose_shape_property(k, s, p, h, op):
    layer = build("conv_transpose2d", {"out_channels": 2, "kernel_size": k, "stride": s,
                                       "padding": p, "output_padding": op})
    try:
        rule = layer.output_shape((3, h, h + 1))
    except ShapeError:
        assert op >= s or (h - 1) * s - 2 * p + k + op < 1
        return
    assert rule[1] == (h - 1) * s - 2 * p + (k - 1) + op + 1
    assert forward_shape(layer, (3, h, h + 1), batch=2) == rule


def test_kernel_larger_than_input_names_the_layer_and_shape():
    layer = build("conv2d", {"name": "c3", "out_channels": 4, "kernel_size": 5})
    with pytest.raises(ShapeError, match=r"c3: kernel 5×5 .* input shape \(1, 3, 3\)"):
        layer.output_shape((1, 3, 3))


def test_linear_on_unflattened_input_says_to_flatten():
    with pytest.raises(ShapeError, match="insert a flatten"):
        build("linear", {"out_features": 3}).output_shape((2, 4, 4))


def test_residual_shape_mismatch_names_both_shapes():
    layer = build("residual", {"body": [{"type": "conv2d", "out_channels": 4, "kernel_size": 1}]})
    with pytest.raises(ShapeError, match=r"body gives \(4, 5, 5\) but the shortcut gives \(2, 5, 5\)"):
        layer.output_shape((2, 5, 5))
