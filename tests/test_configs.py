"""Every file in configs/: it validates, builds, its summary totals are the expected ones,
and one training step runs on a tiny batch."""

from pathlib import Path

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.layout import to_engine
from cnnrun.model import Model, flatten
from cnnrun.summary import summarize

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))

# (parameters, MACs per sample) from the papers / hand counts, never from the code.
EXPECTED = {
    "lenet5": (61_706, 117_600 + 240_000 + 48_000 + 10_080 + 840),
}


def test_every_config_has_expected_numbers():
    assert {p.stem for p in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_summary_totals(path):
    cfg = load_config(path)
    s = summarize(Model(cfg.model.layers, cfg.model.input_shape), cfg.train)
    assert (s["total_params"], s["total_macs"]) == EXPECTED[path.stem]
    assert s["total_flops"] == 2 * s["total_macs"]
    assert sum(r["macs"] for r in s["layers"] if r["depth"] == 0) == s["total_macs"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_step(path):
    cfg = load_config(path)
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0)
    x = np.random.default_rng(0).random((2, *cfg.model.input_shape), dtype=np.float32)
    y, cache = model.forward(state, to_engine(x), train=True, rng=np.random.default_rng(0))
    loss, g = cfg.train.loss.value_and_grad(y, np.array([0, 1]))
    _, grads = model.backward(state, cache, g)
    assert np.isfinite(float(loss))
    assert set(flatten(grads)) == model.trainable_names()
