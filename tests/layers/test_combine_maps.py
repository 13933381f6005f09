"""Learned combinations of feature maps: the penalties, and sparsity that really happens."""

import numpy as np
import pytest

from cnnrun.tools.gradcheck import numeric_grad
from cnnrun.layers import Context
from helpers.layers import build


def layer_with(kind, strength, out=2, C=4):
    return build("combine_maps", {"out_channels": out, "kernel_size": 1, "bias": False,
                                  "sparsity": {"kind": kind, "strength": strength}}), C


def test_l1_penalty_on_softmax_weights_is_constant_with_zero_gradient(rng):
    """Bouvrie Eq. 11–14: λΣ|α| with Σ_i α_ij = 1 is λ·O whatever c is; its gradient is 0."""
    layer, C = layer_with("l1", 0.7)
    for _ in range(3):
        p = {"mix": rng.normal(size=(2, C)) * 3, "kernel": np.ones((C, 1, 1, 1))}
        value, grads = layer.penalty(p)
        assert value == pytest.approx(0.7 * 2)
        np.testing.assert_allclose(grads["mix"], 0.0, atol=1e-15)


def test_entropy_penalty_gradient_matches_finite_differences(rng):
    layer, C = layer_with("entropy", 0.3)
    p = {"mix": rng.normal(size=(2, C)), "kernel": np.ones((C, 1, 1, 1))}
    _, grads = layer.penalty(p)
    num = numeric_grad(lambda: layer.penalty(p)[0], p["mix"], 1e-6)
    np.testing.assert_allclose(grads["mix"], num, rtol=1e-6, atol=1e-9)


def fit(strength, steps=400, seed=0):
    """Learn y = 0.6·x₀ + 0.4·x₁ from four input maps; returns the learned α (1, 4)."""
    rng = np.random.default_rng(seed)
    layer, C = layer_with("entropy", strength, out=1)
    p = layer.init_state((C, 3, 3), rng)
    x = rng.normal(size=(C, 3, 3, 64))
    t = 0.6 * x[0:1] + 0.4 * x[1:2]
    for _ in range(steps):
        y, cache = layer.forward(p, x, Context(train=True))
        _, grads = layer.backward(p, cache, (y - t) / x.shape[-1])
        _, pen = layer.penalty(p)
        for name in grads:
            p[name] -= 0.5 * (grads[name] + pen.get(name, 0.0))
    e = np.exp(p["mix"] - p["mix"].max())
    return e / e.sum()


def test_entropy_penalty_concentrates_alpha_as_lambda_grows():
    """The target reads maps 0 and 1 only: as λ grows, α leaves maps 2 and 3 and its entropy falls."""
    alphas = [fit(lam)[0] for lam in (0.0, 0.05, 0.5)]
    unused = [a[2:].sum() for a in alphas]
    entropy = [-(a * np.log(a)).sum() for a in alphas]
    assert unused[0] > 0.2 and unused[0] > unused[1] > unused[2] and unused[2] < 0.01
    assert entropy[0] > entropy[1] > entropy[2]
