"""Each pattern the import folds or decomposes, on a graph written by hand, with onnxruntime
as the oracle (import_onnx runs it and fails above 1e-4) and the config checked for the
layers the pattern must become."""

import numpy as np
import pytest
import yaml

pytest.importorskip("onnxruntime")
from graphs import model, node, rand, save  # noqa: E402

from cnnrun.tools.onnx_import import import_onnx  # noqa: E402


def imported(proto, tmp_path, **kw):
    r = import_onnx(save(proto, tmp_path / "m.onnx"), tmp_path, "m", **kw)
    assert r["max_rel_error"] < 1e-5, r
    return r, yaml.safe_load((tmp_path / "m.yaml").read_text())["model"]["layers"]


def types(layers):
    return [layer["type"] for layer in layers]


def bn_weights(c):
    return {"g": rand(c, low=0.5), "b": rand(c), "m": rand(c), "v": rand(c, low=0.5, high=2)}


@pytest.mark.parametrize("opset", [7, 13, 21])
def test_caffe_scale_folds_into_the_batch_norm_before_it(opset, tmp_path):
    w = {"w": rand(4, 3, 3, 3), **bn_weights(4), "s": rand(1, 4, 1, 1), "t": rand(1, 4, 1, 1)}
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c", "g", "b", "m", "v"], "n"),
             node("Mul", ["n", "s"], "scaled"), node("Add", ["scaled", "t"], "shifted"),
             node("Relu", ["shifted"], "y")]
    r, layers = imported(model(nodes, w, opset=opset), tmp_path)
    assert types(layers) == ["conv2d", "batchnorm2d", "relu"]
    assert r["parameters"] == 4 * 27 + 2 * 4


def test_scale_with_nothing_to_fold_into_is_an_affine_layer(tmp_path):
    w = {"s": rand(1, 3, 1, 1), "t": rand(3, 1, 1)}
    nodes = [node("Relu", ["x"], "r"), node("Mul", ["r", "s"], "m"), node("Add", ["m", "t"], "y")]
    _, layers = imported(model(nodes, w), tmp_path)
    assert types(layers) == ["relu", "affine"]


def test_matmul_then_add_is_one_linear_layer(tmp_path):
    w = {"W": rand(192, 10), "b": rand(10)}
    nodes = [node("Flatten", ["x"], "f"), node("MatMul", ["f", "W"], "mm"),
             node("Add", ["mm", "b"], "y")]
    r, layers = imported(model(nodes, w), tmp_path)
    assert types(layers) == ["flatten", "linear"] and r["parameters"] == 1930


def test_gemm_without_transposed_weights_and_with_alpha_beta(tmp_path):
    w = {"B": rand(192, 5), "C": rand(5)}
    nodes = [node("Flatten", ["x"], "f"), node("Gemm", ["f", "B", "C"], "y", alpha=0.5, beta=2.0)]
    _, layers = imported(model(nodes, w), tmp_path)
    assert types(layers) == ["flatten", "linear"]


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER"])
def test_auto_pad_same_with_unequal_edges_pads_first(auto_pad, tmp_path):
    nodes = [node("Conv", ["x", "w"], "y", strides=[2, 2], auto_pad=auto_pad)]
    _, layers = imported(model(nodes, {"w": rand(2, 3, 4, 4)}, shape=(1, 3, 7, 7)), tmp_path)
    assert types(layers) == ["pad", "conv2d"]


def test_max_pool_with_an_extra_end_edge_is_ceil_mode(tmp_path):
    nodes = [node("MaxPool", ["x"], "y", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])]
    _, layers = imported(model(nodes), tmp_path)
    assert layers[0]["type"] == "maxpool2d" and layers[0]["ceil_mode"] is True


@pytest.mark.parametrize("count_pad, expected", [(1, ["pad", "avgpool2d"]), (0, ["avgpool2d"])])
def test_average_pool_with_unequal_edges(count_pad, expected, tmp_path):
    nodes = [node("AveragePool", ["x"], "y", kernel_shape=[3, 3], strides=[2, 2],
                  pads=[1, 1, 2, 2], count_include_pad=count_pad)]
    _, layers = imported(model(nodes, shape=(1, 3, 9, 9)), tmp_path)
    assert types(layers) == expected


def test_shape_chain_reshape_with_a_fixed_batch_of_one_is_a_flatten(tmp_path):
    w = {"zero": np.array(0, np.int64), "minus1": np.array([-1], np.int64), "W": rand(5, 192)}
    nodes = [node("Shape", ["x"], "s"), node("Gather", ["s", "zero"], "n", axis=0),
             node("Unsqueeze", ["n", "axes"], "n1"), node("Concat", ["n1", "minus1"], "shape", axis=0),
             node("Reshape", ["x", "shape"], "flat"), node("Gemm", ["flat", "W"], "y", transB=1)]
    w["axes"] = np.array([0], np.int64)
    r, layers = imported(model(nodes, w, batch=None), tmp_path)
    assert types(layers) == ["flatten", "linear"] and r["batch"] == 1


def test_sum_identity_and_dropout_make_a_residual(tmp_path):
    nodes = [node("Identity", ["x"], "i"), node("Conv", ["i", "w"], "c", pads=[1, 1, 1, 1]),
             node("Dropout", ["c"], "d"), node("Sum", ["d", "i"], "s"), node("Relu", ["s"], "y")]
    _, layers = imported(model(nodes, {"w": rand(3, 3, 3, 3)}), tmp_path)
    assert types(layers) == ["residual"] and types(layers[0]["after"]) == ["relu"]
    assert "shortcut" not in layers[0]  # the identity


def test_global_pools(tmp_path):
    nodes = [node("GlobalMaxPool", ["x"], "g"), node("Flatten", ["g"], "f"),
             node("Softmax", ["f"], "y", axis=1)]
    _, layers = imported(model(nodes), tmp_path)
    assert types(layers) == ["global_maxpool", "softmax"]
    _, alone = imported(model([node("GlobalAveragePool", ["x"], "y")]), tmp_path, force=True)
    assert alone == [{"type": "avgpool2d", "name": "y", "kernel_size": 8}]


@pytest.mark.parametrize("opset", [9, 13])
def test_clip_is_relu6_at_both_opsets(opset, tmp_path):
    if opset < 11:
        clip = node("Clip", ["x"], "y", min=0.0, max=6.0)
        w = {}
    else:
        clip, w = node("Clip", ["x", "lo", "hi"], "y"), {"lo": np.float32(0), "hi": np.float32(6)}
    _, layers = imported(model([clip], w, opset=opset), tmp_path)
    assert layers[0]["type"] == "clip" and "min_val" not in layers[0]  # the defaults: ReLU6


def test_lrn_leaky_relu_and_prelu(tmp_path):
    nodes = [node("LRN", ["x"], "l", size=3, alpha=1e-3), node("LeakyRelu", ["l"], "k", alpha=0.2),
             node("PRelu", ["k", "slope"], "y")]
    _, layers = imported(model(nodes, {"slope": rand(3, 1, 1)}), tmp_path)
    assert types(layers) == ["local_response_norm", "leaky_relu", "prelu"]
    assert layers[2]["channelwise"] is True
