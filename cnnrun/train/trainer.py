"""The training loop: data → forward → loss → backward → clip → update, with checkpoints.

Exact resume: every random stream is a function of (seed, stream, position)
(see cnnrun.data), and a checkpoint stores the position, the optimizer and
schedule state and the running sums of the epoch in progress, so stopping
anywhere and resuming reproduces an uninterrupted run bit for bit on the CPU.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..ops.backend import get_backend, to_device, to_numpy
from ..data import (STREAM_INIT, batches, check_input_shape, check_labels, num_batches,
                    prepare)
from ..errors import Interrupted, RunFailed, UserError
from .evaluate import evaluate
from ..engine.parallel.replicas import use_processes
from ..engine.parallel.world import World
from ..engine.model import Model, flatten
from ..engine.state import param_owner_types
from ..optim import Schedule, build_optimizer, no_decay_names
from . import checkpoint
from .callbacks import Checkpoints, EarlyStopping, MetricsLog, Monitor, PlateauLR, Report
from .run_state import RunState, check_same_training, stats_to_json
from .runs import MetricsWriter, checkpoint_path, config_yaml, trim_metrics, write_config
from .step import TrainStep, clip_by_global_norm

class Trainer:
    def __init__(self, cfg, run_dir: Path, reporter, resume: Path | None = None,
                 init_weights: Path | None = None, describe=None, world: World | None = None):
        """``reporter``: the progress display (train/progress.py), or None. ``describe``:
        (model, train config) → the text TensorBoard shows as the model's summary.
        ``world``: the MPI ranks sharing this training (one process by default); rank 0
        alone writes the run directory."""
        self.cfg, self.run_dir, self.reporter = cfg, Path(run_dir), reporter
        self.describe, self.world = describe, world or World()
        if self.world.size > 1 and cfg.train.optimizer.type == "sdlm":
            raise UserError("train.optimizer: sdlm estimates its curvature on this process's "
                            "batch and is not yet summed over MPI ranks; run it without mpiexec "
                            "or choose another optimizer.")
        t = cfg.train
        self.xp = get_backend(t.backend)
        self.dtype = np.dtype(t.dtype)
        self.model = Model(cfg.model.layers, cfg.model.input_shape)
        # Files first, then anything large: a missing dataset or weights of another network
        # are reported before the weights are drawn (VGG-16's take seconds).
        self.data = prepare(cfg.data, t.seed, self.dtype)
        check_labels(self.data, self.model.output_shape, cfg.data.dataset)
        check_input_shape(self.data, self.model.input_shape, cfg.data.dataset)
        given = self._read_weights(Path(init_weights)) if init_weights else None
        self.state = self.model.init(seed=[t.seed, STREAM_INIT], dtype=self.dtype, xp=self.xp)
        self.flat = flatten(self.state)
        # Batches cut over processes (replicas.py): checked here, started on the first pass.
        self.processes = use_processes(self.model, t.processes, self.xp)
        self.trainable = self.model.trainable_in(self.flat)
        self.steps_per_epoch = num_batches(len(self.data.train), t.batch_size)
        owners = param_owner_types(self.model.root, self.model.input_shape)
        self.optimizer = build_optimizer(t.optimizer, self.trainable, t.lr_mult,
                                         no_decay_names(self.trainable, t.no_decay, owners))
        self.schedule = Schedule(t.schedule, t.optimizer.lr, t.epochs, self.steps_per_epoch)
        self.loss_fn = t.loss
        self.epoch, self.batch, self.step = 0, 0, 0
        self.partial = fresh_partial()
        watched = t.monitor if (self.data.val is not None or t.monitor == "train_loss") \
            else "train_loss"
        self.monitor = Monitor(watched, t.early_stopping.min_delta if t.early_stopping else 0.0)
        self.resumed_from, self.stop_training = None, False
        if given is not None:
            self._set_weights(Path(init_weights), given)
        if resume:
            self._resume(Path(resume))
        self.interrupted = False
        self.train_step = TrainStep(self)

    # ---- setup -----------------------------------------------------------------
    def load_weights(self, path: Path) -> None:
        self._set_weights(path, checkpoint.load_weights(path))  # any safetensors of weights

    def _read_weights(self, path: Path) -> dict:
        """--init-weights, read and checked by name and shape against the config's layers
        (any safetensors file of weights), before the model's own are drawn."""
        weights = checkpoint.load_weights(path)
        checkpoint.check_weights(path, weights, {**self.model.param_shapes(),
                                                 **self.model.buffer_shapes()})
        return weights

    def _set_weights(self, path: Path, weights: dict) -> None:
        checkpoint.check_weights(path, weights, {n: a.shape for n, a in self.flat.items()})
        for name, arr in weights.items():
            self.flat[name][...] = to_device(arr.astype(self.dtype), self.xp)

    def _check_slots(self, path: Path, opt: dict) -> None:
        """Strict loading of the optimizer's state: '<parameter>.<slot>', each the shape of
        its trainable parameter (a damaged file would otherwise fail deep in a step)."""
        for key, value in opt.items():
            name, _, slot = key.rpartition(".")
            if name not in self.trainable or not slot or \
                    tuple(value.shape) != tuple(self.flat[name].shape):
                raise UserError(f"{path}: optimizer state '{key}' {tuple(value.shape)} belongs to "
                                f"no trainable parameter of that shape in this model; the "
                                f"checkpoint is damaged or from another network.")

    def _resume(self, path: Path) -> None:
        weights, opt, info = checkpoint.load(path)
        run = RunState.from_info(path, info)
        check_same_training(path, run.config, self.cfg)
        if run.epoch >= self.cfg.train.epochs and run.batch == 0:
            raise UserError(f"--resume {path}: this run is complete ({run.epoch} of "
                            f"{self.cfg.train.epochs} epochs); to train it further, raise its "
                            f"epochs: --set train.epochs={run.epoch + 10} --resume ….")
        self._set_weights(path, weights)
        self._check_slots(path, opt)
        self.optimizer.state = {k: to_device(v.astype(self.dtype), self.xp) for k, v in opt.items()}
        self.optimizer.steps = run.optimizer_steps
        self.schedule.load_state_dict(run.schedule)
        self.epoch, self.batch, self.step = run.epoch, run.batch, run.step
        self.monitor.best, self.monitor.bad_epochs = run.best, run.bad_epochs
        self.partial = run.partial
        self.resumed_from = path

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.model.close()  # the worker processes, if any

    def _run(self) -> dict:
        t = self.cfg.train
        if self.world.is_root:
            checkpoint_path(self.run_dir, "last").parent.mkdir(parents=True, exist_ok=True)
            write_config(self.run_dir, self.cfg)
            if self.resumed_from is not None:  # rows a kill left past the checkpoint
                trim_metrics(self.run_dir, self.epoch, self.step)
            for stale in checkpoint_path(self.run_dir, "last").parent.glob(".*.tmp"):
                stale.unlink(missing_ok=True)  # a checkpoint write a kill cut short
        self.callbacks = self._callbacks()
        self._each("on_train_begin")
        try:
            # Overflow in a diverging run is reported once, by the NaN check, not as warnings.
            with self._sigint_flag(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while self.epoch < t.epochs and not self.stop_training:
                    self._train_epoch()
                    self._end_epoch()
                if self._interrupted():  # a signal during the last evaluation
                    raise Interrupted(f"interrupted after epoch {self.epoch}; its checkpoints "
                                      f"are in {self.checkpoint_path('last').parent}",
                                      143 if self.interrupted == signal.SIGTERM else 130)
        finally:
            self._each("on_train_end")
        final = evaluate(self.model, self.state, self.data.test, self.loss_fn, xp=self.xp,
                         world=self.world)
        return {"run_dir": str(self.run_dir), "test": final, "epochs": self.epoch,
                "stopped_early": self.stop_training}

    def _callbacks(self) -> list:
        """Every rank keeps the same schedule and stopping rule; rank 0 alone writes."""
        t = self.cfg.train
        out = [PlateauLR()]
        if self.world.is_root:  # the epoch's row, then best, then last: see Checkpoints
            out += [MetricsLog(MetricsWriter(self.run_dir, self._tensorboard()), t.log_every),
                    Checkpoints()]
            if self.reporter is not None:
                out.append(Report(self.reporter))
        if t.early_stopping:
            out.append(EarlyStopping(t.early_stopping.patience, t.early_stopping.restore_best))
        return out

    def _each(self, moment: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, moment)(self, *args)

    def _train_epoch(self) -> None:
        t, p = self.cfg.train, self.partial
        start = time.perf_counter()
        share = self.world.share if self.world.size > 1 else None
        for b, x, y in batches(self.data.train, t.batch_size, t.seed, self.epoch, self.batch,
                               self.cfg.data.augment, self.data.fill, share=share):
            loss, correct = self.train_step(x, y)
            self.batch, self.step = b + 1, self.step + 1
            p["loss_sum"] += loss * len(y)
            p["correct"] += correct
            p["seen"] += len(y)
            elapsed = p["seconds"] + time.perf_counter() - start
            self._each("on_step_end", {"epoch": self.epoch + 1, "batch": self.batch,
                                       "step": self.step, "loss": loss, "lr": self.lr(),
                                       "accuracy": p["correct"] / p["seen"],
                                       "images_per_s": p["seen"] / max(elapsed, 1e-9)})
            if self._interrupted():
                p["seconds"] = elapsed
                self.save("last")
                term = self.interrupted == signal.SIGTERM
                raise Interrupted(f"{'terminated' if term else 'interrupted'} at epoch "
                                  f"{self.epoch + 1}, step {self.step}; saved "
                                  f"{self.checkpoint_path('last')}. Continue with --resume "
                                  f"{self.checkpoint_path('last')}", 143 if term else 130)
        p["seconds"] += time.perf_counter() - start

    def _interrupted(self) -> bool:
        """Ctrl-C seen here, or on any rank (they must stop at the same step)."""
        if self.world.size == 1:
            return self.interrupted
        return bool(self.world.allreduce(np.array([int(self.interrupted)]))[0])

    def lr(self) -> float:
        return self.schedule.lr(self.epoch, self.step)

    def _end_epoch(self) -> None:
        """The epoch's row, the monitor's verdict, then the callbacks (checkpoints, logs)."""
        p = self.partial
        row = {"epoch": self.epoch + 1, "step": self.step, "lr": self.lr(),
               "train_loss": p["loss_sum"] / max(p["seen"], 1),
               "train_accuracy": p["correct"] / max(p["seen"], 1), "seconds": p["seconds"]}
        if self.data.val is not None:
            m = evaluate(self.model, self.state, self.data.val, self.loss_fn, xp=self.xp,
                         world=self.world)
            row.update(val_loss=m["loss"], val_accuracy=m["accuracy"])
        else:  # for information only: never used to choose a checkpoint
            m = evaluate(self.model, self.state, self.data.test, self.loss_fn, xp=self.xp,
                         world=self.world)
            row.update(test_loss=m["loss"], test_accuracy=m["accuracy"])
        self.monitor.update(row[self.monitor.name])
        self.epoch, self.batch = self.epoch + 1, 0
        self.partial = fresh_partial()
        self._each("on_epoch_end", row)

    def _tensorboard(self):
        if "tensorboard" not in self.cfg.log:
            return None
        from .tensorboard import TensorBoardLog  # noqa: PLC0415 - only for this optional view
        text = self.describe(self.model, self.cfg.train) if self.describe else ""
        return TensorBoardLog(self.run_dir / "tensorboard", text)

    def message(self, text: str) -> None:
        if self.reporter is not None and self.world.is_root:
            self.reporter.message(text)

    # ---- checkpoints -------------------------------------------------------------
    def checkpoint_path(self, which: str) -> Path:
        return checkpoint_path(self.run_dir, which)

    def what_was_kept(self) -> str:
        last = self.checkpoint_path("last")
        return (f"the last good checkpoint ({last}) was kept" if last.exists()
                else "no checkpoint had been written yet")

    def host_weights(self) -> dict:
        return {n: to_numpy(a) for n, a in self.flat.items()}

    def save(self, which: str) -> None:
        """Write a checkpoint of finite weights, or stop the run and keep the last one."""
        weights = self.host_weights()
        bad = [n for n, w in weights.items() if not np.isfinite(w).all()]
        if bad:
            raise RunFailed(f"the weights became inf or NaN ({', '.join(bad[:3])}) by epoch "
                            f"{self.epoch}, step {self.step}; training stopped and "
                            f"{self.what_was_kept()}. Lower train.optimizer.lr or set "
                            f"train.grad_clip_norm.")
        state = RunState(config_yaml(self.cfg), self.epoch, self.batch, self.step,
                         self.optimizer.steps, self.schedule.state_dict(), self.monitor.best,
                         self.monitor.bad_epochs, self.monitor.name, self.partial,
                         stats_to_json(self.data.stats), self.data.train.classes)
        opt = {n: to_numpy(a) for n, a in self.optimizer.state.items()}
        checkpoint.save(self.checkpoint_path(which), weights, opt, state.to_info())

    @contextmanager
    def _sigint_flag(self):
        """Ctrl-C (SIGINT) and SIGTERM set a flag checked between steps, so weights are never
        half-updated: the run saves ``last`` and exits 130 or 143. A second signal stops at
        once."""
        def handler(signum, frame):
            if self.interrupted:  # a second signal: stop now
                raise KeyboardInterrupt
            self.interrupted = signum
        try:
            previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave the signals alone
            yield
            return
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def fresh_partial() -> dict:
    """The running sums of an epoch in progress (a checkpoint keeps them, for exact resume)."""
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


__all__ = ["Trainer", "Interrupted", "clip_by_global_norm", "UserError"]
