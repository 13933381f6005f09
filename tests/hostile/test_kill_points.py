"""A kill at every point of a run's writes: before each checkpoint, in the middle of its
atomic replace, and at each metrics row. After each, resuming from what the kill left (or
starting afresh where no checkpoint was written yet) ends with the uninterrupted run's
weights, one metrics row per step and per epoch, and no temporary file."""

import io
import json
import os

import numpy as np
import pytest

from cnnrun.config import load_config
from cnnrun.train import checkpoint
from cnnrun.train.progress import PlainReporter
from cnnrun.train.runs import MetricsWriter, checkpoint_path, clear_run
from cnnrun.train.trainer import Trainer

TINY = """\
model:
  input_shape: [1, 28, 28]
  layers:
    - {type: conv2d, name: conv1, out_channels: 2, kernel_size: 5, stride: 2}
    - {type: relu}
    - {type: flatten}
    - {type: dropout, p: 0.2}
    - {type: linear, name: fc, out_features: 10}
data: {train_limit: 64, test_limit: 16, augment: {random_crop_padding: 1}}
train: {epochs: 3, batch_size: 32, optimizer: {type: sgd, lr: 0.05, momentum: 0.9},
        log_every: 1, processes: 1}
"""
STEPS, EPOCHS = 6, 3


class Killed(BaseException):
    """What SIGKILL does to the writes: nothing after this point happens."""


def run(cfg, run_dir, resume=None):
    return Trainer(cfg, run_dir, PlainReporter(stream=io.StringIO()), resume=resume).run()


def weights(run_dir):
    return checkpoint.load(checkpoint_path(run_dir, "last"))[0]


def kill_at(monkeypatch, target, name, n):
    """Make the n-th call of target.name raise Killed before it does anything."""
    real, calls = getattr(target, name), [0]

    def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise Killed
        return real(*args, **kwargs)
    monkeypatch.setattr(target, name, killing)
    return lambda: monkeypatch.setattr(target, name, real)


# (what is killed, how many calls a whole run makes of it)
POINTS = [("checkpoint.save", 2 * EPOCHS), ("os.replace", 2 * EPOCHS),
          ("metrics epoch row", EPOCHS), ("metrics step row", STEPS)]


@pytest.mark.parametrize("point, calls", POINTS, ids=[p for p, _ in POINTS])
def test_a_kill_at_each_write_leaves_a_run_that_resumes_exactly(tmp_path, monkeypatch, point,
                                                                calls):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    cfg = load_config(p)
    run(cfg, tmp_path / "whole")
    target = {"checkpoint.save": (checkpoint, "save"), "os.replace": (os, "replace"),
              "metrics epoch row": (MetricsWriter, "epoch"),
              "metrics step row": (MetricsWriter, "step")}[point]
    for n in range(1, calls + 1):
        run_dir = tmp_path / f"{point.replace(' ', '-')}-{n}"
        restore = kill_at(monkeypatch, *target, n)
        with pytest.raises(Killed):
            run(cfg, run_dir)
        restore()
        last = checkpoint_path(run_dir, "last")
        # what SIGKILL in the middle of a write leaves (an exception cleans up; a kill cannot)
        (last.parent / ".last.safetensors.k1ll.tmp").write_bytes(b"half a checkpoint")
        if last.exists():
            run(cfg, run_dir, resume=last)
        else:  # killed before the first checkpoint: the run starts again (cnnrun train --force)
            clear_run(run_dir)
            run(cfg, run_dir)
        for name, w in weights(tmp_path / "whole").items():
            np.testing.assert_array_equal(weights(run_dir)[name], w, err_msg=f"{n}: {name}")
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == list(range(1, EPOCHS + 1))
        assert [r["step"] for r in rows if r["kind"] == "step"] == list(range(1, STEPS + 1))
        assert not list(run_dir.rglob("*.tmp")), f"{n}: a temporary file was left"
