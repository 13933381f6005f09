"""Every layer's forward and gradients equal torch.nn.functional's on the same weights.

float64, relative 1e-10. Skips cleanly without torch (the 'torch' extra); CI installs it.
"""

import copy

import numpy as np
import pytest

from cnnrun.layers import LAYERS, Context
from cnnrun.ops.layout import to_engine, to_external
from cnnrun.engine.state import flatten, trainable_shapes
from helpers.layers import EXAMPLES, build

torch = pytest.importorskip("torch")
from helpers.torch_ref import REFS, ref  # noqa: E402  (needs torch)

pytestmark = pytest.mark.torch


def test_every_registered_layer_has_a_torch_reference():
    assert set(LAYERS.names()) <= set(REFS)


def to_torch(nested, trainable):
    out = {}
    for k, v in nested.items():
        if isinstance(v, dict):
            out[k] = to_torch(v, trainable.get(k, {}))
        else:
            out[k] = torch.tensor(v, dtype=torch.float64, requires_grad=k in trainable)
    return out


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_forward_and_gradients_match_torch(type_name, cfg, shape, train):
    rng = np.random.default_rng(3)
    layer = build(type_name, cfg)
    state = layer.init_state(shape, rng)
    trainable = trainable_shapes(layer, shape)
    for name, arr in flatten(state).items():  # random values, buffers too (var kept > 0)
        arr[...] = rng.uniform(0.5, 1.5, arr.shape) if "var" in name else rng.normal(size=arr.shape)
    x = rng.normal(size=(3, *shape))
    if type_name == "lp_pool2d":
        x = np.abs(x) + 0.1

    t_state = to_torch(copy.deepcopy(state), trainable)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(layer, t_state, xt, train, np.random.default_rng(5))

    y, cache = layer.forward(state, to_engine(x), Context(train=train, rng=np.random.default_rng(5)))
    np.testing.assert_allclose(to_external(y), yt.detach().numpy(), rtol=1e-10, atol=1e-12)

    R = rng.normal(size=yt.shape)
    (yt * torch.from_numpy(R)).sum().backward()
    gx, grads = layer.backward(state, cache, to_engine(R))
    np.testing.assert_allclose(to_external(gx), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    t_flat, g_flat = flatten(t_state), flatten(grads)
    assert set(g_flat) == set(flatten(trainable))
    for name, g in g_flat.items():
        np.testing.assert_allclose(g, t_flat[name].grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    for name, arr in flatten(state).items():  # buffers (batch-norm running stats) too
        np.testing.assert_allclose(arr, t_flat[name].detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
