"""``cnnrun bench``: time a config's training step and inference, layer by layer (like
``caffe time``), on synthetic data of its input shape; no dataset is read."""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np

from ..ops.backend import get_backend
from ..ops.allocator import keep_freed_memory, peak_rss_mb
from ..ops.blas import blas_info
from ..layers import Context
from ..layers.chain import Hooks, hooked
from ..layers.streams import SampleStreams
from ..ops.layout import to_engine
from ..engine.model import Model, flatten
from ..ops.parallel import solo
from ..optim import build_optimizer
from .profile import LeafProfile
from ..engine.parallel.replicas import shares, use_processes, workers_peak_rss_mb


def _sync(xp):
    if xp is not np:  # GPU kernels run asynchronously: wait before reading the clock
        xp.cuda.Device().synchronize()


def bench(cfg, batch_size: int | None = None, steps: int = 20, warmup: int = 1,
          profile: bool = False) -> dict:
    """Time ``steps`` training steps (layer by layer) and inference passes after ``warmup``
    of each; with ``profile``, then ``steps`` more training steps timed leaf by leaf."""
    keep_freed_memory()
    t = cfg.train
    xp = get_backend(t.backend)
    dtype = np.dtype(t.dtype)
    batch = batch_size or t.batch_size
    model = Model(cfg.model.layers, cfg.model.input_shape)
    state = model.init(seed=0, dtype=dtype, xp=xp)
    flat = flatten(state)
    trainable = model.trainable_in(flat)
    opt = build_optimizer(t.optimizer, trainable)
    rng = np.random.default_rng(0)
    x = xp.asarray(to_engine(rng.random((batch, *cfg.model.input_shape), dtype=np.float32)
                             .astype(dtype)))
    labels = xp.asarray(rng.integers(0, model.output_shape[0], batch))
    children = model.root.children()  # the rows, in declared order
    timer = LayerTimer([child for _, child in children], lambda: _sync(xp))
    # Cut over processes (replicas.py), the layers are timed on this process's share, alone
    # on its core as it runs in training; the totals are then whole steps of the model.
    processes = use_processes(model, t.processes, xp)
    share = shares(batch, processes)[0][1]
    layer_x, layer_labels = xp.ascontiguousarray(x[..., :share]), labels[:share]

    def threads():  # the thread mode of Model.forward (ops/parallel.py), or one share's
        return model.threads(batch) if processes == 1 else solo()

    def train_step(record: bool):  # the root's own passes, each top-level layer timed
        ctx = Context(train=True, rng=SampleStreams([0]))
        with hooked(timer) if record else nullcontext(), threads():
            out, cache = model.root.forward(state, layer_x, ctx)
        _, g = t.loss.value_and_grad(out, layer_labels)
        with hooked(timer) if record else nullcontext(), threads():
            grads = model.root.backward(state, cache, g, need_gx=False)[1]
        opt.step(flat, flatten(grads), t.optimizer.lr)

    def model_step(record: bool):  # a whole step across the processes
        out, cache = model.forward(state, x, train=True, rng=SampleStreams([0]))
        _, g = t.loss.value_and_grad(out, labels)
        opt.step(flat, flatten(model.backward(state, cache, g)[1]), t.optimizer.lr)

    def infer(_record):
        model.forward(state, x, train=False, keep_caches=False)

    try:
        layer_s = _time_steps(train_step, warmup, steps, xp)  # fills the per-layer rows
        train_s = layer_s if processes == 1 else _time_steps(model_step, warmup, steps, xp)
        infer_s = _time_steps(infer, warmup, steps, xp)
        peak = peak_rss_mb() + workers_peak_rss_mb(model)  # every process of the run
    finally:
        model.close()

    macs = model.macs()
    fwd, bwd = timer.seconds
    rows = [{"name": name, "type": child.type, "forward_ms": 1e3 * fwd[i] / steps,
             "backward_ms": 1e3 * bwd[i] / steps,
             "share": (fwd[i] + bwd[i]) / max(fwd.sum() + bwd.sum(), 1e-12)}
            for i, (name, child) in enumerate(children)]
    result = {"config": cfg.name, "batch_size": batch, "steps": steps, "dtype": t.dtype,
              "backend": t.backend, "processes": processes, "layer_batch": share,
              "train_step_ms": 1e3 * train_s, "infer_ms": 1e3 * infer_s,
              "train_images_per_s": batch / train_s, "infer_images_per_s": batch / infer_s,
              # a training step is about 3× the forward MACs (forward, input and weight gradients)
              "train_gflops": 2 * 3 * macs * batch / train_s / 1e9,
              "infer_gflops": 2 * macs * batch / infer_s / 1e9,
              "peak_rss_mb": peak,
              "blas": blas_info() if xp is np else None,  # the host's BLAS, where it multiplies
              "layers": rows}
    if profile:  # separate steps, so the per-leaf timers cannot touch the numbers above
        with LeafProfile(model, lambda: _sync(xp)) as prof:
            for _ in range(steps):
                train_step(False)
        result["profile"] = prof.rows(steps)
    return result


class LayerTimer(Hooks):
    """Seconds in each pass of each top-level layer (what runs inside it is in its time)."""

    def __init__(self, layers, sync):
        self.index = {id(layer): i for i, layer in enumerate(layers)}
        self.seconds = np.zeros((2, len(layers)))  # (forward, backward) × layer
        self.sync = sync

    def around(self, layer, which, call):
        i = self.index.get(id(layer))
        if i is None:
            return call()
        t0 = time.perf_counter()
        out = call()
        self.sync()
        self.seconds[int(which == "backward"), i] += time.perf_counter() - t0
        return out


def _time_steps(step, warmup, steps, xp) -> float:
    """Seconds per step(True) after ``warmup`` of step(False)."""
    for _ in range(warmup):
        step(False)
    t0 = time.perf_counter()
    for _ in range(steps):
        step(True)
    _sync(xp)
    return (time.perf_counter() - t0) / steps
