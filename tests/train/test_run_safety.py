"""Nothing a run writes is lost or wrong after a collision, a kill or a divergence: run
directories claimed atomically, an existing run never overwritten by accident, writes
ordered so any kill leaves a consistent run, non-finite weights never checkpointed, a
resumed run refusing a changed config, and run names that stay inside runs/."""

import io
import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from cnnrun.cli import app
from cnnrun.config import load_config
from cnnrun.errors import RunFailed, UserError
from cnnrun.train import checkpoint
from cnnrun.train.progress import PlainReporter
from cnnrun.train.runs import new_run_dir
from cnnrun.train.trainer import Trainer

TINY = """\
model:
  input_shape: [1, 28, 28]
  layers:
    - {type: conv2d, name: conv1, out_channels: 2, kernel_size: 5, stride: 2}
    - {type: relu}
    - {type: flatten}
    - {type: linear, name: fc, out_features: 10}
data: {train_limit: 96, test_limit: 32}
train:
  epochs: 2
  batch_size: 32
  optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
  log_every: 1
  processes: 1
"""


def config(tmp_path, *overrides):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return load_config(p, list(overrides))


def trainer(cfg, run_dir, **kw):
    return Trainer(cfg, run_dir, PlainReporter(stream=io.StringIO()), **kw)


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_runs_in_the_same_second_get_two_directories(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "strftime", lambda fmt: "20261207-120000")
    a = new_run_dir("net", None, root=str(tmp_path))
    b = new_run_dir("net", None, root=str(tmp_path))
    assert a != b and a.name == "20261207-120000" and b.name == "20261207-120000-2"


def test_an_existing_run_is_not_overwritten_without_resume_or_force(tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(TINY)
    out = tmp_path / "r"
    invoke = lambda *a: CliRunner().invoke(app, ["train", str(cfg_path), "--out", str(out),  # noqa: E731
                                                 "--quiet", *a])
    assert invoke().exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    (out / "notes.txt").write_text("mine")
    r = invoke()
    assert r.exit_code == 2 and "a run is already there" in r.output and "--resume" in r.output
    assert (out / "metrics.jsonl").read_text() == before  # untouched
    assert invoke("--force").exit_code == 0
    assert len([x for x in rows(out) if x["kind"] == "epoch"]) == 2  # replaced, not appended
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files go


def test_a_kill_between_the_end_of_epoch_writes_leaves_a_consistent_run(tmp_path, monkeypatch):
    """Killed after epoch 2's metrics row and `best`, before `last`: the resume starts from
    epoch 1's `last`, re-derives the rows past it, and ends as an uninterrupted run, with
    one row per step and per epoch."""
    whole = trainer(config(tmp_path), tmp_path / "whole")
    whole.run()
    t = trainer(config(tmp_path), tmp_path / "cut")
    real = Trainer.save

    def killed(self, which):
        if which == "last" and self.epoch == 2:
            raise KeyboardInterrupt  # the kill
        real(self, which)
    monkeypatch.setattr(Trainer, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        t.run()
    monkeypatch.setattr(Trainer, "save", real)
    last = tmp_path / "cut" / "checkpoints" / "last.safetensors"
    assert checkpoint.load(last)[2]["epoch"] == 1
    trainer(config(tmp_path), tmp_path / "cut", resume=last).run()
    got = rows(tmp_path / "cut")
    assert [r["epoch"] for r in got if r["kind"] == "epoch"] == [1, 2]
    steps = [r["step"] for r in got if r["kind"] == "step"]
    assert steps == sorted(set(steps)) == list(range(1, 7))
    a, b = (checkpoint.load(tmp_path / d / "checkpoints/last.safetensors")[0] for d in ("whole", "cut"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("bad_step", [3, 6])  # the last step of epoch 1, of epoch 2
def test_non_finite_weights_are_never_checkpointed(tmp_path, bad_step):
    """A weight that overflows on an epoch's last step (so no loss sees it) stops the run at
    the checkpoint, and the checkpoints on disk stay the last finite ones."""
    t = trainer(config(tmp_path), tmp_path / "nan")
    step = t.optimizer.step

    def overflowing(params, grads, lr):
        step(params, grads, lr)
        if t.step + 1 == bad_step:
            params["fc.weight"][0, 0] = np.inf
    t.optimizer.step = overflowing
    with pytest.raises(RunFailed, match=r"weights became inf or NaN \(fc\.weight\)"):
        t.run()
    written = sorted((tmp_path / "nan" / "checkpoints").glob("*.safetensors"))
    assert len(written) == (0 if bad_step == 3 else 2)
    for path in written:
        w, _, info = checkpoint.load(path)
        assert info["epoch"] == 1 and all(np.isfinite(a).all() for a in w.values())


def test_resume_refuses_a_changed_config_but_takes_more_epochs(tmp_path):
    trainer(config(tmp_path, "train.epochs=1"), tmp_path / "r").run()
    last = tmp_path / "r" / "checkpoints" / "last.safetensors"
    with pytest.raises(UserError, match=r"train\.optimizer\.type: 'sgd' → 'adam'.*may change only "
                                        r"train\.epochs"):
        trainer(config(tmp_path, "train.optimizer={type: adam}", "train.epochs=2"),
                tmp_path / "r", resume=last)
    result = trainer(config(tmp_path, "train.epochs=2"), tmp_path / "r", resume=last).run()
    assert result["epochs"] == 2


@pytest.mark.parametrize("name", ["../../escaped", "/abs/dir", "a\x00b", "a b", ".hidden", ""])
def test_a_run_name_is_one_safe_path_component_refused_at_its_line(tmp_path, name):
    p = tmp_path / "n.yaml"
    p.write_text(f"name: {json.dumps(name)}\n" + TINY)
    with pytest.raises(UserError) as e:
        load_config(p)
    assert f"{p}:1:1 name:" in str(e.value) and "is not a run name" in str(e.value)
    assert not (tmp_path / "escaped").exists()


def test_a_config_files_own_name_becomes_a_safe_run_name(tmp_path):
    p = tmp_path / "my net (v2).yaml"
    p.write_text(TINY)
    assert load_config(p).name == "my-net-v2"


def test_metrics_and_json_output_write_null_for_nan(tmp_path):
    """NaN is not JSON: metrics.jsonl and --json print null, which every parser reads."""
    from cnnrun.train.runs import MetricsWriter
    w = MetricsWriter(tmp_path)
    w.epoch({"epoch": 1, "step": 3, "train_loss": float("nan"), "val_loss": float("inf")})
    w.close()

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    row = strict((tmp_path / "metrics.jsonl").read_text())
    assert row["train_loss"] is None and row["val_loss"] is None


def test_missing_data_and_wrong_init_weights_are_reported_before_weights_are_drawn(
        tmp_path, monkeypatch):
    """Files first: nothing large (the model's weights) is built before they are checked."""
    from safetensors.numpy import save_file

    from cnnrun.engine.model import Model
    from helpers.cli import ROOT, invoke

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were drawn before the files were checked")
    monkeypatch.setattr(Model, "init", refuse)
    r = invoke("train", ROOT / "configs" / "lenet5.yaml", "--set", f"data.root={tmp_path}",
               "--out", tmp_path / "a")
    assert r.exit_code == 2 and "no train-images" in r.output, r.output
    save_file({"conv9.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / "w.safetensors"))
    r = invoke("train", ROOT / "configs" / "lenet5.yaml", "--init-weights",
               tmp_path / "w.safetensors", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "1 unexpected: conv9.weight" in r.output, r.output
