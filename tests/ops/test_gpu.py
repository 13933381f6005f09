"""The same layers on CuPy (marker gpu): results equal the NumPy engine's."""

import numpy as np
import pytest

from cnnrun.ops.backend import cupy_available, get_backend, to_numpy
from cnnrun.layers import Context
from cnnrun.ops.layout import to_engine
from cnnrun.engine.model import flatten
from helpers.layers import EXAMPLES, build

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cupy_available(), reason="needs CuPy and an NVIDIA GPU")]


@pytest.mark.parametrize("type_name,cfg,shape", EXAMPLES)
def test_cupy_matches_numpy(type_name, cfg, shape):
    cp = get_backend("cupy")
    layer = build(type_name, cfg)
    rng = np.random.default_rng(0)
    state = layer.init_state(shape, rng)
    x = to_engine(rng.uniform(0.5, 1.5, (3, *shape)))
    results = []
    for xp in (np, cp):
        st = _to(state, xp)
        y, cache = layer.forward(st, xp.asarray(x), Context(train=False))
        gx, grads = layer.backward(st, cache, xp.ones_like(y))
        results.append((to_numpy(y), to_numpy(gx), {k: to_numpy(v) for k, v in flatten(grads).items()}))
    (y0, g0, p0), (y1, g1, p1) = results
    np.testing.assert_allclose(y1, y0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g1, g0, rtol=1e-10, atol=1e-12)
    for k in p0:
        np.testing.assert_allclose(p1[k], p0[k], rtol=1e-10, atol=1e-12)


def _to(nested, xp):
    return {k: _to(v, xp) if isinstance(v, dict) else xp.asarray(v) for k, v in nested.items()}
