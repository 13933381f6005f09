"""The live progress bar: between epochs it counts the next epoch's steps from 0, and after
the last epoch it stays full while the final evaluation runs (it never shows 0/N then)."""

import io

from rich.console import Console

from cnnrun.train.progress import RichReporter


def test_bar_after_each_epoch(tmp_path):
    reporter = RichReporter()
    reporter.console = Console(file=io.StringIO(), force_terminal=True)
    reporter.start(epochs=2, steps_per_epoch=5, run_dir=tmp_path)
    task = reporter.progress.tasks[0]
    for step in range(1, 6):
        reporter.step(0, step, 1.0, 0.5, 100.0, 0.1)
    reporter.epoch({"epoch": 1, "train_loss": 1.0})
    assert (task.completed, task.fields["epoch"]) == (0, 2)  # epoch 2's steps, from 0
    for step in range(1, 6):
        reporter.step(1, step, 1.0, 0.5, 100.0, 0.1)
    reporter.epoch({"epoch": 2, "train_loss": 0.9})
    assert (task.completed, task.total, task.fields["epoch"]) == (5, 5, 2)
    reporter.finish()
