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

from ..backend import get_backend, random_generator, to_device, to_numpy
from ..data import (STREAM_CURVATURE, STREAM_DROPOUT, STREAM_INIT, batches, num_batches,
                    prepare)
from ..errors import RunFailed, UserError
from ..evaluate import evaluate
from ..layout import to_engine
from ..model import Model, flatten, param_owner_types
from ..optim import Schedule, build_optimizer
from ..optim.optimizers import SDLM, estimate_gn_diagonal
from . import checkpoint
from .runs import MetricsWriter, config_yaml, write_config

NORM_TYPES = {"batchnorm1d", "batchnorm2d"}


class Interrupted(Exception):
    """Ctrl-C during training; a checkpoint was saved first."""

    exit_code = 130


class Trainer:
    def __init__(self, cfg, run_dir: Path, reporter, resume: Path | None = None,
                 init_weights: Path | None = None):
        self.cfg, self.run_dir, self.reporter = cfg, Path(run_dir), reporter
        t = cfg.train
        self.xp = get_backend(t.backend)
        self.dtype = np.dtype(t.dtype)
        self.model = Model(cfg.model.layers, cfg.model.input_shape)
        self.state = self.model.init(seed=[t.seed, STREAM_INIT], dtype=self.dtype, xp=self.xp)
        self.flat = flatten(self.state)
        # Batches cut over processes (replicas.py): checked here, started on the first pass.
        self.processes = self.model.use_processes(t.processes, self.xp)
        self.trainable = self.model.trainable_in(self.flat)
        self.data = prepare(cfg.data, t.seed, self.dtype)
        self.steps_per_epoch = num_batches(len(self.data.train), t.batch_size)
        self.optimizer = build_optimizer(t.optimizer, self.trainable, t.lr_mult, self._no_decay())
        self.schedule = Schedule(t.schedule, t.optimizer.lr, t.epochs, self.steps_per_epoch)
        self.loss_fn = t.loss
        self.epoch, self.batch, self.step = 0, 0, 0
        self.best, self.bad_epochs = None, 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        self.monitor = t.monitor if (self.data.val is not None or t.monitor == "train_loss") \
            else "train_loss"
        self.resumed_from = None
        if init_weights:
            self._load_weights(Path(init_weights))
        if resume:
            self._resume(Path(resume))
        self.interrupted = False

    # ---- setup -----------------------------------------------------------------
    def _no_decay(self) -> list[str]:
        owners = param_owner_types(self.model.root, self.model.input_shape)
        out = []
        for name in self.trainable:
            for rule in self.cfg.train.no_decay:
                if (rule == "bias" and name.endswith(".bias")) or \
                        (rule == "norm" and owners.get(name) in NORM_TYPES) or \
                        (rule not in ("bias", "norm") and _match(name, rule)):
                    out.append(name)
        return out

    def _load_weights(self, path: Path) -> None:
        weights, _, _ = checkpoint.load(path)
        expected = {n: a.shape for n, a in self.flat.items()}
        checkpoint.check_weights(path, weights, expected)
        for name, arr in weights.items():
            self.flat[name][...] = to_device(arr.astype(self.dtype), self.xp)

    def _resume(self, path: Path) -> None:
        self._load_weights(path)
        _, opt, info = checkpoint.load(path)
        self.optimizer.state = {k: to_device(v.astype(self.dtype), self.xp) for k, v in opt.items()}
        self.optimizer.steps = info["optimizer_steps"]
        self.schedule.load_state_dict(info["schedule"])
        self.epoch, self.batch, self.step = info["epoch"], info["batch"], info["step"]
        self.best, self.bad_epochs = info["best"], info["bad_epochs"]
        self.partial = info["partial"]
        self.resumed_from = path

    # ---- the loop ----------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.model.close()  # the worker processes, if any

    def _run(self) -> dict:
        t = self.cfg.train
        (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_config(self.run_dir, self.cfg)
        self.metrics = MetricsWriter(self.run_dir, self._tensorboard())
        self.reporter.start(t.epochs, self.steps_per_epoch, self.run_dir, self.resumed_from)
        stopped_early = False
        try:
            # Overflow in a diverging run is reported once, by the NaN check, not as warnings.
            with self._sigint_flag(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while self.epoch < t.epochs and not stopped_early:
                    self._train_epoch()
                    stopped_early = self._end_epoch()
        finally:
            self.reporter.finish()
            self.metrics.close()
        if stopped_early and t.early_stopping.restore_best:
            self._load_weights(self.checkpoint_path("best"))
            self.reporter.message(f"early stopping: restored the best weights "
                                  f"({self.monitor} {self.best:.4f})")
        final = evaluate(self.model, self.state, self.data.test, self.loss_fn, xp=self.xp)
        return {"run_dir": str(self.run_dir), "test": final, "epochs": self.epoch,
                "stopped_early": stopped_early}

    def _train_epoch(self) -> None:
        t = self.cfg.train
        start = time.perf_counter()
        for b, x, y in batches(self.data.train, t.batch_size, t.seed, self.epoch, self.batch,
                               self.cfg.data.augment, self.data.fill):
            loss, correct = self._train_step(x, y)
            self.batch, self.step = b + 1, self.step + 1
            p = self.partial
            p["loss_sum"] += loss * len(y)
            p["correct"] += correct
            p["seen"] += len(y)
            elapsed = p["seconds"] + time.perf_counter() - start
            self.reporter.step(self.epoch, self.batch, loss, p["correct"] / p["seen"],
                               p["seen"] / max(elapsed, 1e-9), self._lr())
            if self.step % t.log_every == 0:
                self.metrics.step({"epoch": self.epoch + 1, "step": self.step, "loss": loss,
                                   "lr": self._lr()})
            if self.interrupted:
                self.partial["seconds"] = elapsed
                self._save("last")
                raise Interrupted(f"interrupted at epoch {self.epoch + 1}, step {self.step}; "
                                  f"saved {self.checkpoint_path('last')}. Continue with "
                                  f"--resume {self.checkpoint_path('last')}")
        self.partial["seconds"] += time.perf_counter() - start

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
            last = self.checkpoint_path("last")
            kept = (f"the last good checkpoint ({last}) was kept" if last.exists()
                    else "no checkpoint had been written yet")
            raise RunFailed(f"the loss became {loss} at epoch {self.epoch + 1}, step "
                            f"{self.step + 1}; training stopped and {kept}. Lower "
                            f"train.optimizer.lr, set train.grad_clip_norm, or check the data.")
        _, grads = self.model.backward(self.state, cache, g)
        gflat = flatten(grads)
        penalty, pgrads = self.model.penalty(self.state)  # e.g. sparsity of learned map mixes
        if pgrads:
            loss += penalty
            for name, pg in pgrads.items():
                gflat[name] = gflat[name] + pg
        if t.grad_clip_norm:
            clip_by_global_norm(gflat, t.grad_clip_norm)
        if isinstance(self.optimizer, SDLM) and self.optimizer.needs_curvature(self.step):
            probe_rng = np.random.default_rng([t.seed, STREAM_CURVATURE, self.step])
            self.optimizer.set_curvature(estimate_gn_diagonal(
                self.model, self.state, xe, labels, self.loss_fn, t.optimizer.probes, probe_rng,
                lambda: random_generator(xp, [t.seed, STREAM_DROPOUT, self.step])))
        self.optimizer.step(self.flat, gflat, self._lr())
        correct = int((out.argmax(axis=0) == labels).sum())
        return loss, correct

    def _end_epoch(self) -> bool:
        t, p = self.cfg.train, self.partial
        row = {"epoch": self.epoch + 1, "step": self.step, "lr": self._lr(),
               "train_loss": p["loss_sum"] / max(p["seen"], 1),
               "train_accuracy": p["correct"] / max(p["seen"], 1), "seconds": p["seconds"]}
        if self.data.val is not None:
            m = evaluate(self.model, self.state, self.data.val, self.loss_fn, xp=self.xp)
            row.update(val_loss=m["loss"], val_accuracy=m["accuracy"])
        else:  # for information only: never used to choose a checkpoint
            m = evaluate(self.model, self.state, self.data.test, self.loss_fn, xp=self.xp)
            row.update(test_loss=m["loss"], test_accuracy=m["accuracy"])
        value = row[self.monitor]
        higher = self.monitor.endswith("accuracy")
        self.schedule.observe(value, higher)
        min_delta = t.early_stopping.min_delta if t.early_stopping else 0.0
        improved = self.best is None or (value > self.best + min_delta if higher
                                         else value < self.best - min_delta)
        self.epoch, self.batch = self.epoch + 1, 0
        self.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        self._save("last")
        if improved:
            self._save("best")
        self.metrics.epoch(row, {n: to_numpy(a) for n, a in self.flat.items()}
                           if self.metrics.tensorboard else None)
        self.reporter.epoch(row)
        return bool(t.early_stopping and self.bad_epochs >= t.early_stopping.patience)

    def _tensorboard(self):
        if "tensorboard" not in self.cfg.log:
            return None
        import io  # noqa: PLC0415 - only for this optional view
        from rich.console import Console  # noqa: PLC0415
        from ..render import summary_table  # noqa: PLC0415
        from ..summary import summarize  # noqa: PLC0415
        from .tensorboard import TensorBoardLog  # noqa: PLC0415
        text = io.StringIO()
        summary_table(summarize(self.model, self.cfg.train), Console(file=text, width=150))
        return TensorBoardLog(self.run_dir / "tensorboard", text.getvalue())

    # ---- checkpoints -------------------------------------------------------------
    def checkpoint_path(self, which: str) -> Path:
        return self.run_dir / "checkpoints" / f"{which}.safetensors"

    def _save(self, which: str) -> None:
        info = {"config": config_yaml(self.cfg), "epoch": self.epoch, "batch": self.batch,
                "step": self.step, "optimizer_steps": self.optimizer.steps,
                "schedule": self.schedule.state_dict(), "best": self.best,
                "bad_epochs": self.bad_epochs, "monitor": self.monitor,
                "partial": self.partial, "data_stats": stats_to_json(self.data.stats),
                "classes": self.data.train.classes}
        weights = {n: to_numpy(a) for n, a in self.flat.items()}
        opt = {n: to_numpy(a) for n, a in self.optimizer.state.items()}
        checkpoint.save(self.checkpoint_path(which), weights, opt, info)

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


def stats_to_json(stats):
    return None if stats is None else {"mean": list(map(float, stats[0])),
                                       "std": list(map(float, stats[1]))}


def clip_by_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients so that their joint L2 norm is at most max_norm (PyTorch's rule)."""
    total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total


def _match(name: str, pattern: str) -> bool:
    import fnmatch
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


__all__ = ["Trainer", "Interrupted", "clip_by_global_norm", "UserError"]
