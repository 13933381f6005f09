"""ONNX export: every registered layer and every config round-trip through onnxruntime."""

from pathlib import Path

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.export.graph import ExportError
from cnnrun.ops.layout import to_engine, to_external
from cnnrun.engine.model import Model, flatten
from helpers.layers import EXAMPLES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from cnnrun.export.onnx import to_model_proto  # noqa: E402

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
IMAGENET = {"alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
            "densenet121"}
NO_ONNX = {  # layer examples with no exact ONNX form, and why
    "local_response_norm-1": "even size",
}


def run_both(model, state, batch, seed=0, positive=False):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch, *model.input_shape)).astype(np.float32)
    if positive:
        x = np.abs(x) + 0.5
    proto = to_model_proto(model, state)
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"input": x})[0]
    ours = to_external(model.forward(state, to_engine(x))[0])
    return ours, theirs


def assert_close(ours, theirs, what):
    assert theirs.shape == ours.shape, what
    scale = max(float(np.abs(ours).max()), 1e-6)
    err = float(np.abs(theirs - ours).max()) / scale
    assert err < 1e-5, f"{what}: onnxruntime differs by {err:.1e} (relative)"


@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_every_layer_example_round_trips(type_name, cfg, shape, request):
    model = Model([{"type": type_name, **cfg}], shape)
    state = model.init(seed=3, dtype=np.float32)
    for name, arr in flatten(state).items():  # random values: torch-style 1s and 0s hide layout bugs
        if "running_var" in name:
            arr[...] = np.random.default_rng(1).uniform(0.5, 2.0, arr.shape)
        elif arr.dtype.kind == "f":
            arr[...] = np.random.default_rng(2).normal(0, 0.7, arr.shape)
    example_id = request.node.callspec.id
    if example_id in NO_ONNX:
        with pytest.raises(ExportError, match=type_name):
            to_model_proto(model, state)
        return
    ours, theirs = run_both(model, state, batch=3, positive=type_name == "lp_pool2d")
    assert_close(ours, theirs, example_id)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_round_trips(path):
    cfg = load_config(path)
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0, dtype=np.float32)
    ours, theirs = run_both(model, state, batch=1 if path.stem in IMAGENET else 4)
    assert_close(ours, theirs, path.stem)


def test_an_unexportable_layer_is_named():
    model = Model([{"type": "local_response_norm", "name": "lrn9", "size": 4}, {"type": "flatten"}],
                  (6, 3, 3))
    with pytest.raises(ExportError, match=r"lrn9: layer type 'local_response_norm' has no ONNX"):
        to_model_proto(model, model.init(seed=0, dtype=np.float32))
