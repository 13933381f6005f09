"""cnnrun import from the command line, and what the other commands do with what it writes."""

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
from helpers.cli import ROOT, invoke  # noqa: E402

from cnnrun.config import load_config  # noqa: E402
from cnnrun.engine.model import Model  # noqa: E402
from cnnrun.export import verify  # noqa: E402
from cnnrun.export.onnx import export_onnx  # noqa: E402


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """LeNet-5 written to ONNX by cnnrun export, then imported by the CLI."""
    d = tmp_path_factory.mktemp("lenet")
    cfg = load_config(ROOT / "configs" / "lenet5.yaml")
    net = Model(cfg.model.layers, cfg.model.input_shape)
    export_onnx(net, net.init(seed=0), d / "lenet.onnx")
    r = invoke("import", d / "lenet.onnx", "-o", d)
    assert r.exit_code == 0, r.output
    assert "onnxruntime" in r.output and "agrees to" in r.output
    return d


def test_summary_eval_predict_hessian_and_fine_tuning_accept_the_import(lenet, tmp_path):
    assert "61,706" in invoke("summary", lenet / "lenet.yaml").output
    r = invoke("eval", lenet / "lenet.safetensors", "--json")
    assert r.exit_code == 0, r.output
    assert "accuracy" in json.loads(r.output)
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 28, 28), np.float32))
    r = invoke("predict", lenet / "lenet.safetensors", tmp_path / "x.npy", "--json")
    assert r.exit_code == 0 and len(json.loads(r.output)["outputs"]) == 2
    r = invoke("hessian", lenet / "lenet.safetensors", "--batch", "8", "--json")
    assert r.exit_code == 0, r.output
    r = invoke("train", lenet / "lenet.yaml", "--init-weights", lenet / "lenet.safetensors",
               "--set", "train.epochs=1", "--set", "data.synthetic.train_size=64",
               "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 0, r.output


def test_disagreement_with_onnxruntime_exits_1_and_keeps_the_files(lenet, tmp_path, monkeypatch):
    real = verify.compare_file

    def off(*args, **kwargs):
        return {**real(*args, **kwargs), "max_rel_error": 0.5}
    monkeypatch.setattr(verify, "compare_file", off)
    r = invoke("import", lenet / "lenet.onnx", "-o", tmp_path, "--name", "bad")
    assert r.exit_code == 1 and "differs from onnxruntime" in r.output
    assert (tmp_path / "bad.yaml").exists() and (tmp_path / "bad.safetensors").exists()


def test_no_check_skips_onnxruntime(lenet, tmp_path):
    r = invoke("import", lenet / "lenet.onnx", "-o", tmp_path, "--no-check")
    assert r.exit_code == 0 and "agrees" not in r.output
