"""Every registered layer's examples as pytest parameters, and a layer built from a config."""

import pytest
from pydantic import TypeAdapter

from cnnrun.layers import LAYERS, AnyLayer

LAYER_ADAPTER = TypeAdapter(AnyLayer)


def build(type_name, cfg):
    return LAYER_ADAPTER.validate_python({"type": type_name, **cfg})


def example_params():
    """One pytest param per (layer type, example), id'd as type-index."""
    out = []
    for name, cls in LAYERS.items():
        for i, (cfg, shape) in enumerate(cls.examples):
            out.append(pytest.param(name, cfg, tuple(shape), id=f"{name}-{i}"))
    return out


EXAMPLES = example_params()
