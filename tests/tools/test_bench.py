"""cnnrun bench runs on every config and reports what it promises (never asserts a time)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cnnrun.cli import app
from helpers.nets import SMALL_INPUT

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_bench_runs_on_every_config(path):
    overrides = [f"model.input_shape={SMALL_INPUT[path.stem]}"] if path.stem in SMALL_INPUT else []
    args = ["bench", str(path), "--batch-size", "2", "--steps", "1", "--profile", "--json"]
    args += [a for o in overrides for a in ("--set", o)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert {"batch_size", "train_images_per_s", "infer_images_per_s", "peak_rss_mb",
            "layers"} <= set(out)
    assert out["batch_size"] == 2 and out["train_images_per_s"] > 0 and out["peak_rss_mb"] > 0
    # one row per top-level layer, in the order the config declares them, each timed
    from cnnrun.config import load_config
    cfg = load_config(path, overrides)
    declared = [layer.name or str(i) for i, layer in enumerate(cfg.model.layers)]
    assert [l["name"] for l in out["layers"]] == declared
    assert all(l["forward_ms"] > 0 for l in out["layers"])
    profile = out["profile"]  # every leaf, nested ones included, then the time outside them
    # no time counted twice: the leaves' sum stays within the block's wall time
    assert profile[-1]["type"] == "rest" and profile[-1]["share"] >= 0


def test_bench_profile_adds_the_leaf_table_and_rows():
    path = Path(__file__).parents[2] / "configs" / "lenet5.yaml"
    base = ["bench", str(path), "--batch-size", "2", "--steps", "1", "--profile"]
    r = CliRunner().invoke(app, base + ["--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["profile"]
    assert {row["type"] for row in rows} == {"conv2d", "relu", "maxpool2d", "flatten", "linear",
                                             "rest"}
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 0, r.output
    assert "leaf layers alike summed" in r.output and "outside leaves" in r.output
    assert "profile" not in json.loads(CliRunner().invoke(app, base[:-1] + ["--json"]).output)
