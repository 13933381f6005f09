"""`cnnrun runs` shows the score of the epoch its best checkpoint holds, not the best score of
any epoch: the checkpoint is chosen by train.monitor, which may be another metric."""

import json

import numpy as np

from cnnrun.train import checkpoint
from cnnrun.train.runs import summarize_run


def test_the_best_column_is_the_best_checkpoints_own_epoch(tmp_path):
    run = tmp_path / "runs" / "net" / "20261207-120000"
    (run / "checkpoints").mkdir(parents=True)
    rows = [{"kind": "epoch", "epoch": 1, "train_loss": 0.5, "test_accuracy": 0.9785},
            {"kind": "epoch", "epoch": 2, "train_loss": 0.4, "test_accuracy": 0.9765}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    checkpoint.save(run / "checkpoints" / "best.safetensors", {"w": np.zeros(1, np.float32)},
                    {}, {"epoch": 2, "monitor": "train_loss"})
    row = summarize_run(run)
    assert (row["best"], row["best_epoch"], row["chosen_by"]) == (0.9765, 2, "train_loss")


def test_a_run_without_a_readable_best_checkpoint_falls_back_to_its_metrics(tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "epoch", "epoch": 1,
                                                   "val_accuracy": 0.5}) + "\n")
    (run / "checkpoints" / "best.safetensors").write_bytes(b"garbage")
    row = summarize_run(run)
    assert row["best"] == 0.5 and row["best_epoch"] is None
