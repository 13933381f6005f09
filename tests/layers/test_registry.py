"""The registry is complete: every module registers, every layer is documented and exemplified."""

import inspect

import pytest

from cnnrun.layers import LAYER_MODULES, LAYERS
from cnnrun.registry import Registry

REQUIRED = {
    "conv2d", "conv1d", "maxpool2d", "avgpool2d", "global_avgpool", "adaptive_avgpool2d",
    "lp_pool2d", "linear", "flatten", "dropout", "batchnorm2d", "batchnorm1d",
    "local_response_norm", "relu", "leaky_relu", "sigmoid", "tanh", "scaled_tanh", "softmax",
    "conv_transpose2d", "upsample2d", "sequential", "residual", "concat", "dense", "subsample2d",
    "combine_maps",
}


def test_every_required_layer_is_registered():
    assert REQUIRED <= set(LAYERS.names())


@pytest.mark.parametrize("module", LAYER_MODULES, ids=lambda m: m.__name__.split(".")[-1])
def test_every_layer_module_registers_something(module):
    registered = {cls.__module__ for _, cls in LAYERS.items()}
    assert module.__name__ in registered


@pytest.mark.parametrize("name", LAYERS.names())
def test_layer_is_documented_and_has_examples(name):
    cls = LAYERS.get(name)
    doc = inspect.getdoc(cls) or ""
    assert len(doc) > 30, f"{name} needs a docstring saying what it computes and its shapes"
    assert cls.examples, f"{name} declares no examples, so no test would check it"
    assert cls.model_fields["type"].default == name


def test_duplicate_registration_is_an_error():
    reg = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(KeyError, match="registered twice"):
        reg.register("a")(object)


def test_unknown_name_suggests_and_lists():
    with pytest.raises(KeyError, match=r"did you mean 'conv2d'\?.*known: .*maxpool2d"):
        LAYERS.get("conv2")
