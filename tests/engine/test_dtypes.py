"""A float32 run holds no float64 array: outputs, caches, gradients and state stay float32."""

import numpy as np
import pytest

from cnnrun.layers import Context
from cnnrun.ops.layout import to_engine
from helpers.layers import EXAMPLES, build


def arrays_in(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from arrays_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from arrays_in(v)


@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_float32_in_float32_everywhere(type_name, cfg, shape):
    layer = build(type_name, cfg)
    rng = np.random.default_rng(0)
    state = _cast(layer.init_state(shape, rng))
    x = to_engine(rng.uniform(0.5, 1.0, (4, *shape)).astype(np.float32))
    y, cache = layer.forward(state, x, Context(train=True, rng=rng))
    gx, grads = layer.backward(state, cache, np.ones_like(y))
    for a in [y, gx, *arrays_in(cache), *arrays_in(grads), *arrays_in(state)]:
        if a is not None and a.dtype.kind == "f":
            assert a.dtype == np.float32, f"{type_name}: found a {a.dtype} array of shape {a.shape}"


def _cast(nested):
    return {k: _cast(v) if isinstance(v, dict) else v.astype(np.float32) for k, v in nested.items()}
