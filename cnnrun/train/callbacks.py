"""What happens around the training loop, as callbacks with Keras' semantics.

The trainer runs steps and epochs; everything else is a callback called at four moments:
``on_train_begin``, ``on_step_end(row)``, ``on_epoch_end(row)`` and ``on_train_end``. At an
epoch's end they run in list order, after the trainer has judged the monitored metric
(``Monitor``), so each reads the same verdict:

- ``PlateauLR``: the plateau schedule counts epochs without improvement (ReduceLROnPlateau);
- ``MetricsLog``: metrics.jsonl and metrics.csv, and TensorBoard when asked (CSVLogger,
  TensorBoard);
- ``Checkpoints``: ``best`` when the metric improved (ModelCheckpoint with save_best_only),
  then ``last`` every epoch;
- ``Report``: the progress display;
- ``EarlyStopping``: stops after ``patience`` epochs without improvement and, at the end,
  restores the best weights (``restore_best_weights``).

Why callbacks: each rule is a dozen lines that can be read, tested and changed alone, and
the trainer's loop fits in one screen.
"""

from __future__ import annotations


class Monitor:
    """The metric that chooses checkpoints (``train.monitor``): its best value, and the
    epochs since it last improved by more than ``min_delta``."""

    def __init__(self, name: str, min_delta: float = 0.0):
        self.name, self.min_delta = name, min_delta
        self.higher_is_better = name.endswith("accuracy")
        self.best, self.bad_epochs, self.improved = None, 0, False

    def update(self, value: float) -> bool:
        d = self.min_delta
        self.improved = self.best is None or (value > self.best + d if self.higher_is_better
                                              else value < self.best - d)
        if self.improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.improved


class Callback:
    def on_train_begin(self, trainer) -> None:
        pass

    def on_step_end(self, trainer, row: dict) -> None:
        pass

    def on_epoch_end(self, trainer, row: dict) -> None:
        pass

    def on_train_end(self, trainer) -> None:
        pass


class PlateauLR(Callback):
    def on_epoch_end(self, trainer, row):
        trainer.schedule.observe(row[trainer.monitor.name], trainer.monitor.higher_is_better)


class Checkpoints(Callback):
    """``best`` before ``last``, after the epoch's metrics row: ``last`` is where a resume
    starts, so whatever a kill leaves, everything up to ``last``'s position is written (and
    the rows past it are trimmed on resume)."""

    def on_epoch_end(self, trainer, row):
        if trainer.monitor.improved:
            trainer.save("best")
        trainer.save("last")


class MetricsLog(Callback):
    """metrics.jsonl and .csv (train/runs.py), with TensorBoard as a second view."""

    def __init__(self, writer, every: int):
        self.writer, self.every = writer, every

    def on_step_end(self, trainer, row):
        if row["step"] % self.every == 0:
            self.writer.step({k: row[k] for k in ("epoch", "step", "loss", "lr")})

    def on_epoch_end(self, trainer, row):
        weights = trainer.host_weights() if self.writer.tensorboard else None
        self.writer.epoch(row, weights)

    def on_train_end(self, trainer):
        self.writer.close()


class Report(Callback):
    """The progress display (train/progress.py) as a callback."""

    def __init__(self, reporter):
        self.reporter = reporter

    def on_train_begin(self, trainer):
        self.reporter.start(trainer.cfg.train.epochs, trainer.steps_per_epoch, trainer.run_dir,
                            trainer.resumed_from)

    def on_step_end(self, trainer, row):
        self.reporter.step(row["epoch"] - 1, row["batch"], row["loss"], row["accuracy"],
                           row["images_per_s"], row["lr"])

    def on_epoch_end(self, trainer, row):
        self.reporter.epoch(row)

    def on_train_end(self, trainer):
        self.reporter.finish()


class EarlyStopping(Callback):
    def __init__(self, patience: int, restore_best: bool):
        self.patience, self.restore_best = patience, restore_best
        self.stopped = False

    def on_epoch_end(self, trainer, row):
        if trainer.monitor.bad_epochs >= self.patience:
            self.stopped = trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.stopped and self.restore_best:
            trainer.load_weights(trainer.checkpoint_path("best"))
            trainer.message(f"early stopping: restored the best weights "
                            f"({trainer.monitor.name} {trainer.monitor.best:.4f})")
