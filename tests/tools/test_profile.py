"""The leaf profile of `cnnrun bench --profile` times every leaf exactly once per pass,
groups alike leaves, accounts for the whole step, and stops timing when its block ends.
No test asserts a time."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cnnrun.tools.bench import bench
from cnnrun.config import load_config
from cnnrun.layers.activations import ReLU
from cnnrun.layers.conv import Conv2d
from cnnrun.layers.dense import Flatten, Linear
from cnnrun.ops.layout import to_engine
from cnnrun.engine.model import Model, leaves
from cnnrun.tools.profile import LeafProfile, leaf_kind

CONFIGS = Path(__file__).parents[2] / "configs"


def _step(model, state, x):
    out, cache = model.forward(state, x, train=True, rng=np.random.default_rng(0))
    model.backward(state, cache, np.ones_like(out), need_gx=True)


@pytest.mark.parametrize("name", ["resnet20-cifar10", "lenet5"])
def test_every_leaf_is_timed_once_per_step_and_the_shares_add_up(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    steps = 2
    rows = bench(cfg, batch_size=2, steps=steps, warmup=0, profile=True)["profile"]
    model = Model(cfg.model.layers, cfg.model.input_shape)
    expected = Counter(leaf_kind(leaf, shape) for _, leaf, shape in
                       leaves(model.root, model.input_shape))
    leaf_rows, outside = rows[:-1], rows[-1]
    got = {(r["type"], r["weight"] and tuple(r["weight"]), tuple(r["input"]),
            tuple(r["output"])): r["calls"] for r in leaf_rows}
    assert got == expected  # one row per kind of leaf; ResNet-20 has 6 first-stage 3×3 convs
    if name == "resnet20-cifar10":
        assert got[("conv2d", (16, 16, 3, 3), (16, 32, 32), (16, 32, 32))] == 6
    # no time counted twice: a container timed around its leaves would push the leaves'
    # sum past the block's wall time and make the rest negative
    assert outside["type"] == "rest" and outside["share"] >= 0
    assert [r["share"] for r in leaf_rows] == sorted((r["share"] for r in leaf_rows),
                                                     reverse=True)
    for r in leaf_rows:  # every leaf ran forward; all but the first needed a backward
        assert r["forward_ms"] > 0


def test_the_hooks_end_with_the_block_even_after_an_error():
    model = Model([Conv2d(out_channels=2, kernel_size=3), ReLU(), Flatten(),
                   Linear(out_features=3)], (1, 5, 5))
    state = model.init(seed=0)
    x = to_engine(np.random.default_rng(0).random((2, 1, 5, 5)).astype(np.float32))
    with pytest.raises(RuntimeError, match="inside"), LeafProfile(model) as prof:
        _step(model, state, x)
        raise RuntimeError("inside")
    timed = dict(prof.calls)
    assert sum(timed.values()) == 4  # each leaf's forward, once
    _step(model, state, x)  # after the block: not timed
    assert dict(prof.calls) == timed


class _SubReLU(ReLU):
    """A leaf class that inherits its passes from another profiled leaf class."""


def test_a_subclass_of_a_profiled_class_is_timed_once():
    model = Model([ReLU(name="a"), _SubReLU(name="b")], (4,))
    state = model.init(seed=0)
    x = to_engine(np.random.default_rng(0).random((3, 4)).astype(np.float32))
    with LeafProfile(model) as prof:
        _step(model, state, x)
    (row, outside) = prof.rows(steps=1)
    assert row["type"] == "relu" and row["calls"] == 2  # a double wrap would count 3
    assert outside["share"] >= 0


def test_leaves_of_another_model_are_not_timed():
    mine = Model([ReLU()], (4,))
    other = Model([ReLU()], (4,))
    state = other.init(seed=0)
    x = to_engine(np.ones((2, 4), dtype=np.float32))
    with LeafProfile(mine) as prof:
        _step(other, state, x)
    assert [r["type"] for r in prof.rows(steps=1)] == ["rest"]
