"""The training loop: data → forward → loss → backward → clip → update, with checkpoints.

Exact resume: every random stream is a function of (seed, stream, position)
(see cnnrun.data), and a checkpoint stores the position, the optimizer and
schedule state and the running sums of the epoch in progress, so stopping
anywhere and resuming reproduces an uninterrupted run bit for bit on the CPU.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..ops.backend import get_backend, random_generator, to_device, to_numpy
from ..data import (STREAM_CURVATURE, STREAM_DROPOUT, STREAM_INIT, batches, num_batches,
                    prepare)
from ..errors import Interrupted, RunFailed, UserError
from .evaluate import evaluate
from ..ops.layout import to_engine
from ..engine.parallel.replicas import use_processes
from ..engine.model import Model, flatten
from ..engine.state import param_owner_types
from ..optim import Schedule, build_optimizer, no_decay_names
from ..optim.curvature import estimate_gn_diagonal
from . import checkpoint
from .callbacks import Checkpoints, EarlyStopping, MetricsLog, Monitor, PlateauLR, Report
from .run_state import RunState, stats_to_json
from .runs import MetricsWriter, checkpoint_path, config_yaml, write_config

class Trainer:
    def __init__(self, cfg, run_dir: Path, reporter, resume: Path | None = None,
                 init_weights: Path | None = None, describe=None):
        """``reporter``: the progress display (train/progress.py), or None. ``describe``:
        (model, train config) → the text TensorBoard shows as the model's summary."""
        self.cfg, self.run_dir, self.reporter = cfg, Path(run_dir), reporter
        self.describe = describe
        t = cfg.train
        self.xp = get_backend(t.backend)
        self.dtype = np.dtype(t.dtype)
        self.model = Model(cfg.model.layers, cfg.model.input_shape)
        self.state = self.model.init(seed=[t.seed, STREAM_INIT], dtype=self.dtype, xp=self.xp)
        self.flat = flatten(self.state)
        # Batches cut over processes (replicas.py): checked here, started on the first pass.
        self.processes = use_processes(self.model, t.processes, self.xp)
        self.trainable = self.model.trainable_in(self.flat)
        self.data = prepare(cfg.data, t.seed, self.dtype)
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
        if init_weights:
            self.load_weights(Path(init_weights))
        if resume:
            self._resume(Path(resume))
        self.interrupted = False

    # ---- setup -----------------------------------------------------------------
    def load_weights(self, path: Path) -> None:
        self._set_weights(path, checkpoint.load(path)[0])

    def _set_weights(self, path: Path, weights: dict) -> None:
        checkpoint.check_weights(path, weights, {n: a.shape for n, a in self.flat.items()})
        for name, arr in weights.items():
            self.flat[name][...] = to_device(arr.astype(self.dtype), self.xp)

    def _resume(self, path: Path) -> None:
        weights, opt, info = checkpoint.load(path)
        run = RunState.from_info(path, info)
        self._set_weights(path, weights)
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
        checkpoint_path(self.run_dir, "last").parent.mkdir(parents=True, exist_ok=True)
        write_config(self.run_dir, self.cfg)
        self.callbacks = self._callbacks()
        self._each("on_train_begin")
        try:
            # Overflow in a diverging run is reported once, by the NaN check, not as warnings.
            with self._sigint_flag(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while self.epoch < t.epochs and not self.stop_training:
                    self._train_epoch()
                    self._end_epoch()
        finally:
            self._each("on_train_end")
        final = evaluate(self.model, self.state, self.data.test, self.loss_fn, xp=self.xp)
        return {"run_dir": str(self.run_dir), "test": final, "epochs": self.epoch,
                "stopped_early": self.stop_training}

    def _callbacks(self) -> list:
        t = self.cfg.train
        out = [PlateauLR(), Checkpoints(),
               MetricsLog(MetricsWriter(self.run_dir, self._tensorboard()), t.log_every)]
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
        for b, x, y in batches(self.data.train, t.batch_size, t.seed, self.epoch, self.batch,
                               self.cfg.data.augment, self.data.fill):
            loss, correct = self._train_step(x, y)
            self.batch, self.step = b + 1, self.step + 1
            p["loss_sum"] += loss * len(y)
            p["correct"] += correct
            p["seen"] += len(y)
            elapsed = p["seconds"] + time.perf_counter() - start
            self._each("on_step_end", {"epoch": self.epoch + 1, "batch": self.batch,
                                       "step": self.step, "loss": loss, "lr": self._lr(),
                                       "accuracy": p["correct"] / p["seen"],
                                       "images_per_s": p["seen"] / max(elapsed, 1e-9)})
            if self.interrupted:
                p["seconds"] = elapsed
                self.save("last")
                raise Interrupted(f"interrupted at epoch {self.epoch + 1}, step {self.step}; "
                                  f"saved {self.checkpoint_path('last')}. Continue with "
                                  f"--resume {self.checkpoint_path('last')}")
        p["seconds"] += time.perf_counter() - start

    def _lr(self) -> float:
        return self.schedule.lr(self.epoch, self.step)

    def _train_step(self, x, y) -> tuple[float, int]:
        xp, t = self.xp, self.cfg.train
        xe = to_engine(to_device(x, xp))
        labels = to_device(y, xp)
        rng = random_generator(xp, [t.seed, STREAM_DROPOUT, self.step])
        out, cache = self.model.forward(self.state, xe, train=True, rng=rng)
        loss, g = self.loss_fn.value_and_grad(out, labels)
        loss = float(loss)  # a host sync; needed for the NaN check and the progress bar
        if not math.isfinite(loss):
            self._diverged(loss)
        _, grads = self.model.backward(self.state, cache, g)
        gflat = flatten(grads)
        penalty, pgrads = self.model.penalty(self.state)  # e.g. sparsity of learned map mixes
        if pgrads:
            loss += penalty
            for name, pg in pgrads.items():
                gflat[name] = gflat[name] + pg
        if t.grad_clip_norm:
            clip_by_global_norm(gflat, t.grad_clip_norm)
        if self.optimizer.needs_curvature(self.step):
            probe_rng = np.random.default_rng([t.seed, STREAM_CURVATURE, self.step])
            self.optimizer.set_curvature(estimate_gn_diagonal(
                self.model, self.state, xe, labels, self.loss_fn, t.optimizer.probes, probe_rng,
                lambda: random_generator(xp, [t.seed, STREAM_DROPOUT, self.step])))
        self.optimizer.step(self.flat, gflat, self._lr())
        correct = int((out.argmax(axis=0) == labels).sum())
        return loss, correct

    def _diverged(self, loss: float):
        last = self.checkpoint_path("last")
        kept = (f"the last good checkpoint ({last}) was kept" if last.exists()
                else "no checkpoint had been written yet")
        raise RunFailed(f"the loss became {loss} at epoch {self.epoch + 1}, step "
                        f"{self.step + 1}; training stopped and {kept}. Lower "
                        f"train.optimizer.lr, set train.grad_clip_norm, or check the data.")

    def _end_epoch(self) -> None:
        """The epoch's row, the monitor's verdict, then the callbacks (checkpoints, logs)."""
        p = self.partial
        row = {"epoch": self.epoch + 1, "step": self.step, "lr": self._lr(),
               "train_loss": p["loss_sum"] / max(p["seen"], 1),
               "train_accuracy": p["correct"] / max(p["seen"], 1), "seconds": p["seconds"]}
        if self.data.val is not None:
            m = evaluate(self.model, self.state, self.data.val, self.loss_fn, xp=self.xp)
            row.update(val_loss=m["loss"], val_accuracy=m["accuracy"])
        else:  # for information only: never used to choose a checkpoint
            m = evaluate(self.model, self.state, self.data.test, self.loss_fn, xp=self.xp)
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
        if self.reporter is not None:
            self.reporter.message(text)

    # ---- checkpoints -------------------------------------------------------------
    def checkpoint_path(self, which: str) -> Path:
        return checkpoint_path(self.run_dir, which)

    def host_weights(self) -> dict:
        return {n: to_numpy(a) for n, a in self.flat.items()}

    def save(self, which: str) -> None:
        state = RunState(config_yaml(self.cfg), self.epoch, self.batch, self.step,
                         self.optimizer.steps, self.schedule.state_dict(), self.monitor.best,
                         self.monitor.bad_epochs, self.monitor.name, self.partial,
                         stats_to_json(self.data.stats), self.data.train.classes)
        opt = {n: to_numpy(a) for n, a in self.optimizer.state.items()}
        checkpoint.save(self.checkpoint_path(which), self.host_weights(), opt, state.to_info())

    @contextmanager
    def _sigint_flag(self):
        """Ctrl-C sets a flag checked between steps, so weights are never half-updated."""
        def handler(signum, frame):
            if self.interrupted:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self.interrupted = True
        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread: leave Ctrl-C alone
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def fresh_partial() -> dict:
    """The running sums of an epoch in progress (a checkpoint keeps them, for exact resume)."""
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}


def clip_by_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients so that their joint L2 norm is at most max_norm (PyTorch's rule)."""
    total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total



__all__ = ["Trainer", "Interrupted", "clip_by_global_norm", "UserError"]
