"""The short LeNet-5 run that the cli tests look at, trained once per session."""

import pytest

from helpers.cli import ROOT, invoke

for extra in ("onnx", "onnxruntime", "matplotlib", "tensorboardX", "jsonschema", "PIL"):
    pytest.importorskip(extra)  # pip install -e ".[test,onnx,plot,tensorboard]"


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """Two epochs of LeNet-5 on 600 shipped digits, with TensorBoard logging."""
    out = tmp_path_factory.mktemp("runs") / "lenet5" / "r1"
    r = invoke("train", ROOT / "configs" / "lenet5.yaml", "--out", out, "--quiet",
               "--set", "train.epochs=2", "--set", "data.train_limit=600",
               "--set", "data.test_limit=200", "--set", "log=[tensorboard]",
               "--set", "train.log_every=5")
    assert r.exit_code == 0, r.output
    return out
