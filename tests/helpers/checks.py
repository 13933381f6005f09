"""Checks several test modules run on their own cases: the R-operator against finite
differences of the gradient, and the support of an output unit's input gradient."""

import numpy as np

from cnnrun.engine.state import flatten, trainable_shapes, unflatten
from cnnrun.layers import Context
from cnnrun.ops.layout import to_engine
from cnnrun.tools.gradcheck import dodge_kinks
from helpers.layers import build

DRAWS = 24  # max-pool routes to one winner: the union over draws covers the window


def setup_layer(type_name, cfg, shape, seed=0, positive=False):
    """A layer of an example, its state drawn away from zero, and an input away from kinks."""
    rng = np.random.default_rng(seed)
    layer = build(type_name, cfg)
    state = layer.init_state(shape, rng)
    trainable = set(flatten(trainable_shapes(layer, shape)))
    for name, arr in flatten(state).items():
        if name in trainable:
            arr[...] = rng.normal(0, 0.7, arr.shape)
    low = 0.2 if positive else -1  # x^p of a negative x is not real (lp-pooling)
    x = to_engine(dodge_kinks(rng.uniform(low, 1, (3, *shape))))
    return rng, layer, state, trainable, x


def check_r_operator(type_name, cfg, shape, train, positive=False):
    """R{y}, R{∂E/∂x} and R{∂E/∂θ} of a layer equal central differences along a random
    joint direction (input and parameters), for E = Σ R∘y + ½Σy²."""
    rng, layer, state, trainable, x = setup_layer(type_name, cfg, shape, positive=positive)
    ctx = lambda: Context(train=train, rng=np.random.default_rng(7), freeze_stats=True)
    y0, _ = layer.forward(state, x, ctx())
    R = rng.normal(size=y0.shape)  # E = Σ R∘y + ½Σy², so ∂E/∂y = R + y and R{∂E/∂y} = R{y}

    def grads():
        y, cache = layer.forward(state, x, ctx())
        gx, g = layer.backward(state, cache, R + y)
        return gx, flatten(g)

    flat = flatten(state)
    rx = rng.normal(size=x.shape)
    v = {n: rng.normal(size=flat[n].shape) for n in trainable}
    y, cache = layer.forward(state, x, ctx())
    ry, rcache = layer.r_forward(state, unflatten(v), rx, cache, ctx())
    rgx, rgrads = layer.r_backward(state, unflatten(v), cache, rcache, R + y, ry)

    eps = 1e-6
    def shift(sign):
        x[...] += sign * eps * rx
        for n in trainable:
            flat[n] += sign * eps * v[n]
    shift(+1); gx_up, g_up = grads(); y_up = layer.forward(state, x, ctx())[0].copy()
    shift(-2); gx_dn, g_dn = grads(); y_dn = layer.forward(state, x, ctx())[0].copy()
    shift(+1)
    # R{y} along the joint direction (R{x}, V), parameters included (copies: some
    # layers, e.g. flatten, return views of x, which is perturbed in place)
    np.testing.assert_allclose(ry, (y_up - y_dn) / (2 * eps), rtol=1e-5, atol=1e-7, equal_nan=False)
    np.testing.assert_allclose(rgx, (gx_up - gx_dn) / (2 * eps), rtol=1e-5, atol=1e-7, equal_nan=False)
    rflat = flatten(rgrads)
    assert set(rflat) == trainable
    for n in trainable:
        np.testing.assert_allclose(rflat[n], (g_up[n] - g_dn[n]) / (2 * eps), rtol=1e-5, equal_nan=False,
                                   atol=1e-7, err_msg=n)


def supports(layer, shape, seed):
    """For every output position: the input positions its gradient reaches (union of draws)."""
    rng = np.random.default_rng(seed)
    in_sp = shape[1:]
    out_shape = layer.output_shape(shape)
    units = [()] if len(out_shape) == 1 and layer.type != "flatten" else \
        list(np.ndindex(*(out_shape[1:] if len(out_shape) > 1 else (out_shape[0],))))
    reach = np.zeros((len(units), *in_sp), dtype=bool)
    for _ in range(DRAWS):
        state = layer.init_state(shape, rng)
        x = np.repeat(np.abs(rng.normal(size=(1, *shape))) + 0.1, len(units), axis=0)
        y, cache = layer.forward(state, to_engine(x), Context(train=False))
        gy = np.zeros_like(y)  # sample n asks for output unit n, all channels
        for n, u in enumerate(units):
            gy[(slice(None), *u, n) if len(out_shape) > 1 else (u or slice(None), n)] = 1.0
        gx, _ = layer.backward(state, cache, gy)
        gx = np.moveaxis(np.asarray(gx), -1, 0)  # (N, C, *spatial)
        reach |= np.abs(gx).sum(axis=1) > 0
    return units, reach
