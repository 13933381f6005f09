"""Element-wise work split by channels over the workers (ops/parallel.by_channels): the
shares must cover every channel once and give exactly what one call gives."""

import numpy as np
import pytest

from cnnrun.tools.gradcheck import check_layer
from cnnrun.layers import LAYERS
from cnnrun.layers.activations import Elementwise
from cnnrun.layers.base import Context
from cnnrun.ops import parallel
from cnnrun.ops.spatial import pad_spatial
from helpers.layers import EXAMPLES, build

ELEMENTWISE = [e for e in EXAMPLES if issubclass(LAYERS.get(e.values[0]), Elementwise)]
BATCH_NORM = [e for e in EXAMPLES if e.values[0].startswith("batchnorm")]


@pytest.fixture
def split(monkeypatch):
    """Two workers, and every array large enough to split."""
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 0)


@pytest.mark.parametrize("C,expected", [(5, [(0, 3), (3, 5)]), (2, [(0, 1), (1, 2)]),
                                        (1, [(None, None)])])
def test_shares_cover_every_channel_once(C, expected, split):
    seen = []
    parallel.by_channels(lambda c: seen.append((c.start, c.stop)), np.zeros((C, 4)))
    assert sorted(seen) == expected


def test_small_arrays_stay_in_the_calling_thread(monkeypatch):
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    small = np.zeros((4, parallel.SPLIT_BYTES // 4 // 8 - 1))  # one column (32 bytes) short
    assert not parallel.splits(small)
    assert parallel.splits(np.zeros((4, parallel.SPLIT_BYTES // 4 // 8)))


@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((2, 0), (0, 3))])
def test_split_padding_is_numpys_pad(pads, split):
    x = np.random.default_rng(0).normal(size=(5, 4, 3, 2)).astype(np.float32)
    want = np.pad(x, ((0, 0), *pads, (0, 0)))
    np.testing.assert_array_equal(pad_spatial(x, pads), want)


def _whole_then_split(layer, x, gy, ctx, monkeypatch):
    """A layer's forward and backward in one call, then with two workers and every array
    split: the two (y, gx) pairs, float32 checked."""
    y, cache = layer.forward({}, x, ctx)
    gx, _ = layer.backward({}, cache, gy)
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 0)
    y2, cache2 = layer.forward({}, x, ctx)
    gx2, _ = layer.backward({}, cache2, gy)
    assert y2.dtype == gx2.dtype == np.float32
    return (y, gx), (y2, gx2)


@pytest.mark.parametrize("type_name,cfg,shape", ELEMENTWISE)
def test_split_activation_equals_one_call(type_name, cfg, shape, monkeypatch):
    layer = build(type_name, cfg)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(*shape, 3)).astype(np.float32)
    gy = rng.normal(size=x.shape).astype(np.float32)
    whole, split = _whole_then_split(layer, x, gy, Context(train=True, rng=rng), monkeypatch)
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(b, a)


MAX_POOL = [e for e in EXAMPLES if e.values[0] == "maxpool2d"]


@pytest.mark.parametrize("type_name,cfg,shape", ELEMENTWISE + MAX_POOL + BATCH_NORM)
def test_split_layer_gradients_match_finite_differences(type_name, cfg, shape, split):
    for r in check_layer(build(type_name, cfg), shape):
        np.testing.assert_allclose(r.analytic, r.numeric, rtol=1e-6, atol=1e-8,
                                   err_msg=f"{type_name} gradient of {r.name}")


def _batch_norm_passes(layer, x, gy, train):
    rng = np.random.default_rng(1)
    p = layer.init_state(x.shape[:-1], rng)
    for name in p:  # random statistics and affine parameters, float32 like x
        p[name] = (rng.uniform(0.5, 1.5, p[name].shape) if name.endswith("var")
                   else rng.normal(size=p[name].shape)).astype(np.float32)
    y, cache = layer.forward(p, x, Context(train=train, rng=rng))
    gx, grads = layer.backward(p, cache, gy)
    return y, gx, grads, p


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("type_name,cfg,shape", BATCH_NORM)
def test_split_batch_norm_equals_one_call(type_name, cfg, shape, train, monkeypatch):
    layer = build(type_name, cfg)
    rng = np.random.default_rng(0)
    x = (3 + 2 * rng.normal(size=(*shape, 4))).astype(np.float32)
    gy = rng.normal(size=x.shape).astype(np.float32)
    whole = _batch_norm_passes(layer, x, gy, train)
    monkeypatch.setattr(parallel, "num_workers", lambda: 2)
    monkeypatch.setattr(parallel, "SPLIT_BYTES", 0)
    shared = _batch_norm_passes(layer, x, gy, train)
    for a, b in zip(whole[:2], shared[:2]):
        assert b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    for d in (2, 3):  # parameter gradients, then the running statistics after the pass
        assert whole[d].keys() == shared[d].keys()
        for k in whole[d]:
            np.testing.assert_allclose(shared[d][k], whole[d][k], rtol=1e-6, err_msg=k)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("type_name,cfg,shape", MAX_POOL)
def test_split_max_pool_equals_one_call(type_name, cfg, shape, ties, monkeypatch):
    """Every geometry (tiled, disjoint, overlapping windows), and ties, where the first
    maximum must win in each share as in one call."""
    layer = build(type_name, cfg)
    shape = (3, *shape[1:])  # three channels: two shares
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(*shape, 3)) if ties else rng.normal(size=(*shape, 3))
    x = x.astype(np.float32)
    gy = rng.normal(size=(*layer.output_shape(shape), 3)).astype(np.float32)
    shares = []
    real = parallel.by_channels
    monkeypatch.setattr("cnnrun.ops.pool.by_channels",
                        lambda work, a: real(lambda c: (shares.append(c), work(c)), a))
    whole, split = _whole_then_split(layer, x, gy, Context(train=True), monkeypatch)
    assert len(shares) == 2 + 4  # one call each way, then two shares each way
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(b, a)
