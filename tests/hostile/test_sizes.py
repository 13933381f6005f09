"""Sizes checked before anything is allocated: a config or a checkpoint's stored config that
declares a state larger than the machine's free memory is refused at once, in one paragraph
that gives the size and the largest tensor."""

import time

import numpy as np
import yaml
from typer.testing import CliRunner

from cnnrun.cli import app
from cnnrun.train import checkpoint

HUGE = {"model": {"input_shape": [1, 28, 28], "layers": [
    {"type": "flatten"}, {"type": "linear", "name": "fc", "out_features": 1_000_000_000}]},
    "data": {"train_limit": 32, "test_limit": 8}, "train": {"epochs": 1, "processes": 1}}


def refused_quickly(args):
    t0 = time.perf_counter()
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert time.perf_counter() - t0 < 10
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "GiB to set up" in r.output and "the largest, fc.weight, has 784,000,000,000" in r.output
    return r


def test_a_config_declaring_a_huge_layer_is_refused_before_allocating(tmp_path):
    p = tmp_path / "huge.yaml"
    p.write_text(yaml.safe_dump(HUGE))
    refused_quickly(["train", p, "--out", tmp_path / "r", "--quiet"])
    refused_quickly(["bench", p, "--steps", "1"])


def test_a_checkpoint_whose_config_declares_a_huge_layer_is_refused(tmp_path):
    path = tmp_path / "huge.safetensors"
    info = {"config": yaml.safe_dump(HUGE), "epoch": 1}
    checkpoint.save(path, {"fc.weight": np.zeros((1, 1), np.float32)}, {}, info)
    r = refused_quickly(["eval", path, "--json"])
    assert str(path) in r.output  # which checkpoint
