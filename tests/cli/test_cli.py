"""The CLI through Typer's test runner: commands, JSON outputs, exit codes, no tracebacks."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnrun.cli import app
from cnnrun.layers import LAYERS

runner = CliRunner()
TINY = """\
model:
  input_shape: [1, 28, 28]
  layers:
    - {type: conv2d, name: conv1, out_channels: 4, kernel_size: 5, stride: 2}
    - {type: relu}
    - {type: flatten}
    - {type: linear, name: fc, out_features: 10}
data: {train_limit: 128, test_limit: 40}
train: {epochs: 1, batch_size: 32, optimizer: {type: sgd, lr: 0.05}}
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture
def trained(tiny, tmp_path):
    r = invoke("train", tiny, "--out", tmp_path / "run", "--quiet")
    assert r.exit_code == 0, r.output
    return tmp_path / "run"


def test_help_lists_the_commands():
    r = invoke("--help")
    assert r.exit_code == 0
    for cmd in ("train", "eval", "summary", "validate", "predict", "layers"):
        assert cmd in r.output


STARTUP_PROBE = """
import sys
sys.argv = ["cnnrun", *sys.argv[1:]]
from cnnrun.cli import app
try:
    app()
except SystemExit as e:
    assert not e.code, e.code
print(sorted(m for m in ("numpy", "torch", "cupy", "matplotlib", "onnx", "ctypes",
                          "concurrent.futures") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["summary", "configs/vgg16.yaml"],
                                  ["summary", "configs/resnet20-cifar10.yaml", "--json"]])
def test_startup_commands_import_no_array_library(args):
    """--help and summary use shape rules only: importing NumPy (75 ms) or PyTorch (2 s) at
    start-up would be paid on every call, and so would the thread pool's and the allocator's
    modules (~13 ms). A fresh interpreter, since this one has them all."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", STARTUP_PROBE, *args], cwd=root,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_schema_modules_keep_their_annotations_live():
    """The ~60 pydantic classes of these modules read their field annotations as objects;
    with ``from __future__ import annotations`` pydantic would compile and evaluate each as
    a string at every start (~20 ms of `cnnrun summary`)."""
    import __future__

    from cnnrun.engine import losses
    from cnnrun.config import schema
    from cnnrun.layers import LAYER_MODULES
    from cnnrun.optim import optimizers, schedules
    postponed = [m.__name__ for m in (*LAYER_MODULES, schema, losses, optimizers, schedules)
                 if getattr(m, "annotations", None) is __future__.annotations]
    assert postponed == []


def test_train_writes_the_run_directory(trained):
    assert (trained / "config.yaml").exists()
    assert (trained / "checkpoints/last.safetensors").exists()
    assert (trained / "checkpoints/best.safetensors").exists()
    rows = [json.loads(l) for l in (trained / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["kind"] == "epoch" and "train_loss" in rows[-1]
    assert (trained / "metrics.csv").read_text().startswith("epoch,step,train_loss")
    resolved = (trained / "config.yaml").read_text()
    assert "momentum: 0.0" in resolved and "label_smoothing: 0.0" in resolved  # defaults filled


def test_eval_json(trained):
    r = invoke("eval", trained / "checkpoints/best.safetensors", "--json")
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert {"loss", "accuracy", "top5", "per_class", "confusion"} <= set(m)
    assert m["count"] == 40 and 0.0 <= m["accuracy"] <= 1.0
    assert np.asarray(m["confusion"]).sum() == 40


def test_eval_tables(trained):
    r = invoke("eval", trained / "checkpoints/best.safetensors")
    assert r.exit_code == 0 and "top-1 accuracy" in r.output and "confusion" in r.output


def test_predict_json(trained, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    img = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    r = invoke("predict", trained / "checkpoints/best.safetensors", img, "--top-k", "2", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out[0]["image"] == str(img) and len(out[0]["top"]) == 2
    assert sum(p["probability"] for p in out[0]["top"]) <= 1.0 + 1e-6


def test_summary_json_keys(tiny):
    r = invoke("summary", tiny, "--json")
    assert r.exit_code == 0
    s = json.loads(r.output)
    assert {"input_shape", "layers", "total_params", "trainable_params", "total_macs"} <= set(s)
    row = s["layers"][0]
    assert {"name", "type", "output_shape", "params", "macs", "receptive_field", "jump",
            "start"} <= set(row)
    assert row["name"] == "conv1" and row["output_shape"] == [4, 12, 12]


def test_layers_lists_the_registry():
    r = invoke("layers", "--json")
    assert r.exit_code == 0
    assert {row["type"] for row in json.loads(r.output)} == set(LAYERS.names())


def test_validate(tiny):
    r = invoke("validate", tiny)
    assert r.exit_code == 0 and "ok" in r.output


@pytest.mark.parametrize("args,needle", [
    (["validate", "nope.yaml"], "no such config file"),
    (["eval", "nope.safetensors"], "no such checkpoint"),
    (["train", "{tiny}", "--set", "train.epochs=0"], "train.epochs: must be ≥ 1, got 0"),
    (["train", "{tiny}", "--resume", "auto"], "--resume auto: no runs/tiny"),
])
def test_user_errors_exit_2_without_traceback(args, needle, tiny, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    r = invoke(*[a.format(tiny=tiny) for a in args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_corrupt_checkpoint_exits_2(trained, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((trained / "checkpoints/last.safetensors").read_bytes()[:100])
    r = invoke("eval", bad)
    assert r.exit_code == 2 and "truncated or corrupted" in r.output


def test_failed_run_exits_1(tiny, tmp_path):
    r = invoke("train", tiny, "--set", "train.optimizer.lr=1e30", "--set", "train.epochs=2",
               "--out", tmp_path / "r", "--quiet")
    assert r.exit_code == 1 and "the loss became" in r.output and "Traceback" not in r.output


def test_debug_shows_the_traceback():
    r = invoke("--debug", "validate", "nope.yaml")
    assert r.exit_code == 2 and "Traceback" in r.output


def test_resume_auto_continues_the_latest_run(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("train", tiny, "--quiet").exit_code == 0
    r = invoke("train", tiny, "--quiet", "--resume", "auto", "--set", "train.epochs=2")
    assert r.exit_code == 0, r.output
    runs = list((tmp_path / "runs" / "tiny").iterdir())
    assert len(runs) == 1  # continued in place
    assert (runs[0] / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs
    done = invoke("train", tiny, "--quiet", "--resume", "auto", "--set", "train.epochs=2")
    assert done.exit_code == 2 and "this run is complete (2 of 2 epochs)" in done.output
    assert "--set train.epochs=12 --resume" in done.output


def test_hessian_help_says_which_images_batch_takes():
    assert "the first N training images" in invoke("hessian", "--help").output
