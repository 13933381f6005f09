"""What a person sees during training: a live rich progress bar and a table row per epoch,
or plain lines when --quiet is given or the output is not a terminal."""

from __future__ import annotations

import sys

COLUMNS = [("epoch", "epoch", "{}"), ("train loss", "train_loss", "{:.4f}"),
           ("train acc", "train_accuracy", "{:.2%}"), ("val loss", "val_loss", "{:.4f}"),
           ("val acc", "val_accuracy", "{:.2%}"), ("test acc", "test_accuracy", "{:.2%}"),
           ("lr", "lr", "{:.3g}"), ("time", "seconds", "{:.1f}s")]


def _fmt(row, key, spec):
    v = row.get(key)
    return "–" if v is None else spec.format(v)


class PlainReporter:
    def __init__(self, stream=None, quiet=False):
        self.stream = stream or sys.stdout
        self.quiet = quiet

    def start(self, epochs, steps_per_epoch, run_dir, resumed_from=None):
        print(f"run directory: {run_dir}", file=self.stream)
        if resumed_from:
            print(f"resumed from {resumed_from}", file=self.stream)

    def step(self, epoch, step_in_epoch, loss, accuracy, images_per_s, lr):
        pass

    def epoch(self, row):
        cells = [f"{name} {_fmt(row, key, spec)}" for name, key, spec in COLUMNS
                 if row.get(key) is not None]
        print(" | ".join(cells), file=self.stream, flush=True)

    def message(self, text):
        print(text, file=self.stream, flush=True)

    def finish(self):
        pass


class RichReporter(PlainReporter):
    """A live bar (epoch, step, loss, accuracy, images/s, ETA) above a growing table."""

    def __init__(self):
        from rich.console import Console
        super().__init__()
        self.console = Console()

    def start(self, epochs, steps_per_epoch, run_dir, resumed_from=None):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)
        self.console.print(f"[bold]run directory[/bold] {run_dir}")
        if resumed_from:
            self.console.print(f"resumed from {resumed_from}")
        self.progress = Progress(TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                                 BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"),
                                 TextColumn("acc {task.fields[acc]:.2%}"),
                                 TextColumn("{task.fields[ips]:,.0f} img/s"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, transient=True)
        self.progress.start()
        self.epochs, self.steps = epochs, steps_per_epoch
        self.task = self.progress.add_task("train", total=steps_per_epoch, epoch=1, epochs=epochs,
                                           loss=0.0, acc=0.0, ips=0.0)
        self.header_done = False

    def step(self, epoch, step_in_epoch, loss, accuracy, images_per_s, lr):
        self.progress.update(self.task, completed=step_in_epoch, epoch=epoch + 1, loss=loss,
                             acc=accuracy, ips=images_per_s)

    def epoch(self, row):
        from rich.table import Table
        table = Table(show_header=not self.header_done, box=None, pad_edge=False)
        for name, _, _ in COLUMNS:
            table.add_column(name, justify="right", min_width=10)
        table.add_row(*[_fmt(row, key, spec) for _, key, spec in COLUMNS])
        self.header_done = True
        self.progress.console.print(table)
        if row.get("epoch", 0) < self.epochs:  # the bar now counts the next epoch's steps
            self.progress.reset(self.task, total=self.steps)  # (reset's fields replace all)
            self.progress.update(self.task, epoch=row["epoch"] + 1)
        else:  # the last epoch stays full while the final evaluation runs
            self.progress.update(self.task, completed=self.steps)

    def message(self, text):
        self.console.print(text)

    def finish(self):
        if hasattr(self, "progress"):
            self.progress.stop()


def make_reporter(quiet: bool):
    if quiet or not sys.stdout.isatty():
        return PlainReporter(quiet=quiet)
    return RichReporter()
