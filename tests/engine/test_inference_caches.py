"""An inference pass that no backward follows (eval, predict) drops each layer's cache as it
goes: the outputs are the same, and it holds far less memory than a pass kept for backward."""

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.engine.model import Model
from cnnrun.ops.layout import to_engine
from helpers.cli import ROOT


@pytest.mark.parametrize("config", ["densenet-bc-cifar10", "resnet20-cifar10", "lenet5"])
def test_dropping_caches_changes_no_output_and_keeps_none(config):
    cfg = load_config(ROOT / "configs" / f"{config}.yaml")
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0)
    x = to_engine(np.random.default_rng(0).random((4, *cfg.model.input_shape), np.float32))
    kept, caches = model.forward(state, x)
    dropped, none = model.forward(state, x, keep_caches=False)
    np.testing.assert_array_equal(kept, dropped)
    assert any(c is not None for c in caches) and all(c is None for c in none)


def test_eval_pass_holds_less_memory_than_a_kept_pass():
    import tracemalloc
    cfg = load_config(ROOT / "configs" / "densenet-bc-cifar10.yaml")
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0)
    x = to_engine(np.random.default_rng(0).random((16, 3, 32, 32), np.float32))
    peaks = []
    for keep in (True, False):
        tracemalloc.start()
        model.forward(state, x, keep_caches=keep)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] / 3, peaks
