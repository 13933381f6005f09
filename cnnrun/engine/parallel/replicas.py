"""Data parallelism on one machine: each pass's batch cut into shares, one per process.

Why processes. A small network's pass is many short operations: LeNet-5 at batch 64
ran 3.3 ms a training step on one core and only 2.9 ms on two, the products too small
to split well and band hand-offs costing tens of µs each. Cutting the batch in two
and running the halves on two threads did no better (2.8 ms, though a half alone
takes 1.75 ms), because the many element-wise operations of a few µs each, and the
Python between them, run one thread at a time under the GIL. Two processes, each on
its half alone, took 1.9 ms a step each.

How. This process computes the first share itself and k − 1 worker processes
(``python -m cnnrun.engine.parallel.worker``, commands as JSON lines over pipes) the others.
Arrays go through shared memory (``shared_block``): before each pass this process
writes the whole state (parameters and buffers, a few hundred kB for such networks)
into one block the workers read as their own, and each worker's share of x, y, gy,
∂E/∂x and its parameter gradients lie in that worker's block. The loss sees the
whole batch's output, and ``sum_gradients`` adds the shares' gradients: the one place
where a data-parallel step reduces them (across machines that is an MPI allreduce).

Batch norm normalises by the whole batch's statistics, which are sums: the shares
add theirs up in the middle of the pass (``CrossShares``, through ``Context.shares``),
so every process normalises alike. That serves a second kind of network: ResNet-20's
16- and 32-map products are too thin for two BLAS threads, and at batch 128 one
process on two threads took 440–457 ms a step where one thread took 307–318 on half
the batch; cut over two processes it trains 1.13–1.31× faster.

When (``train.processes``). "auto": every core, where a batch may be cut (no dropout:
``Layer.splittable``), the state is small (STATE_BYTES: VGG-11's 9.2 M parameters
trained no faster in two processes, in 40 % more memory), and a share holds at least
MIN_SHARE_MACS, so the pipes' ~40 µs round trips stay small. A number: that many
processes whenever a pass can be cut. Results differ from one process's only by the
rounding of the sums (tests bound it), and are reproducible for a given number of
processes.
"""

from __future__ import annotations

import weakref

import numpy as np

from ...ops.backend import get_array_module, is_numpy
from ...errors import UserError
from ...layers import Context
from ...layers.streams import SampleStreams
from ..model import flatten, leaves, unflatten
from ...ops import parallel  # parallel.num_workers is read at call time (tests set it)
from ...ops.parallel import solo
from .pipes import CrossShares, Worker, shut_down
from .shared_block import SharedBlock

__all__ = ["CrossShares", "Replicas", "SplitCache", "processes_for", "shares", "sum_gradients",
           "use_processes", "workers_peak_rss_mb"]

MIN_SHARE_MACS = 4_000_000  # per share and pass under "auto" (LeNet-5: ~10 samples)
STATE_BYTES = 16 << 20  # "auto" copies the state into shared memory each pass: at most this


def processes_for(model, setting, xp=np) -> int:
    """The processes a model's passes use under ``train.processes = setting``."""
    if not is_numpy(xp) or setting == 1:
        return 1  # a GPU is one device; several are MPI's (later)
    splittable = model.root.splittable(train=True)
    if setting == "auto":
        state = sum(np.prod(s) for s in flatten(model.param_shapes()).values()) * 8
        k = parallel.num_workers()
        return k if splittable and k > 1 and state <= STATE_BYTES else 1
    cores = parallel.machine_cores()
    cap = 2 * cores  # a share per core; twice that still tests uneven shares
    if int(setting) > cap:
        raise UserError(f"train.processes: {setting} processes on a machine of "
                        f"{cores} cores would only fight over them (each wants one); "
                        f"set train.processes: auto, or at most {cap}.")
    if not splittable:
        raise UserError(f"train.processes: {setting} cuts each batch into shares that run "
                        "apart, but a layer of this network couples the samples of a batch "
                        "in a way the shares cannot add up. Set train.processes: auto or 1.")
    return int(setting)


def use_processes(model, setting="auto", xp=np) -> int:
    """Cut the model's later passes over processes as ``train.processes = setting`` says;
    the number of processes. ``model.close()`` stops the workers."""
    model.close()
    k = processes_for(model, setting, xp)
    if k > 1:
        model.runner = Replicas(model, k, forced=setting != "auto")
    return k


def workers_peak_rss_mb(model) -> float:
    """The worker processes' peak resident memory, added up (0 without workers)."""
    return model.runner.peak_rss_mb() if isinstance(model.runner, Replicas) else 0.0


def sum_gradients(own: dict, others) -> dict:
    """The shares' parameter gradients added up: the step's reduction (flat dicts)."""
    total = {name: g.copy() for name, g in own.items()}
    for part in others:
        for name, g in total.items():
            g += part(name)
    return total


class SplitCache:
    """What a split pass's backward needs: this process's own cache and the shares."""

    def __init__(self, own, shares, pass_id):
        self.own, self.shares, self.pass_id = own, shares, pass_id


def shares(N: int, k: int) -> list[tuple[int, int]]:
    """k contiguous ranges covering 0 … N−1, the first ones longer by one where uneven."""
    bounds = [N * i // k for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


class Replicas:
    """A model's passes cut over ``processes`` processes (this one and its workers)."""

    def __init__(self, model, processes: int, forced: bool = False):
        self.model, self.k, self.forced = model, processes, forced
        self._workers: list[Worker] = []
        self._state_block: SharedBlock | None = None
        self._signature = None  # the state's (name, shape, dtype) the workers were given
        self._pass = 0
        self._splittable = {}
        # the largest array a layer sums across the shares: two per channel (batch norm)
        self._sum_size = 2 * max(shape[0] for _, _, shape in leaves(model.root,
                                                                     model.input_shape))
        self._macs = model.macs()  # per sample; the layers are frozen (10 µs a call)
        self._finalizer = weakref.finalize(self, shut_down, self._workers)

    def takes(self, x, train: bool, rng=None) -> bool:
        """Whether this pass is cut into shares: a network that draws at random (dropout)
        is cut only where each sample draws from its own stream (``SampleStreams``)."""
        if not is_numpy(get_array_module(x)) or x.shape[-1] < self.k:
            return False
        if train not in self._splittable:
            root = self.model.root
            self._splittable[train] = (root.splittable(train), root.draws(train))
        splittable, draws = self._splittable[train]
        if draws and not isinstance(rng, SampleStreams):
            return False
        share_macs = x.shape[-1] // self.k * self._macs
        return splittable and (self.forced or share_macs >= MIN_SHARE_MACS)

    def owns(self, cache) -> bool:
        return isinstance(cache, SplitCache)

    # ---- passes -------------------------------------------------------------
    def forward(self, state, x, train: bool, rng=None, sums=None):
        return self._in_step(self._forward, state, x, train, rng, sums)

    def backward(self, state, cache: SplitCache, gy, need_gx: bool):
        return self._in_step(self._backward, state, cache, gy, need_gx)

    def _in_step(self, part, *args):
        """A pass that fails half-way leaves replies unread: the workers go, and the next
        pass starts fresh ones."""
        try:
            return part(*args)
        except BaseException:
            self.close()
            raise

    def _forward(self, state, x, train: bool, rng, sums):
        flat = flatten(state)
        self._start(flat)
        for name, a in flat.items():  # the workers' parameters, as they are now
            np.copyto(self._state_block.array(name), a)
        self._pass += 1
        cut = shares(x.shape[-1], self.k)
        batch = sums.batch if sums is not None else x.shape[-1]  # the whole batch's samples
        streams = isinstance(rng, SampleStreams)
        for w, (lo, hi) in zip(self._workers, cut[1:]):
            if w.room < hi - lo or w.dtype != x.dtype:
                w.fit(self._io_entries(hi - lo, x.dtype), hi - lo, x.dtype)
            np.copyto(w.io.array("x", (*x.shape[:-1], hi - lo)), x[..., lo:hi])
            w.send({"op": "forward", "n": hi - lo, "batch": batch, "train": train,
                    "streams": streams and [list(rng.key), rng.first + lo]})
        lo, hi = cut[0]
        across = CrossShares(self._workers, hi - lo, batch, outer=sums)
        own_rng = rng.share(lo) if streams else rng
        with solo():
            y, own = self.model.root.forward(state, np.ascontiguousarray(x[..., lo:hi]),
                                             Context(train=train, rng=own_rng, shares=across))
        parts = [y]
        for w, (lo, hi) in zip(self._workers, cut[1:]):
            w.reply()
            parts.append(w.io.array("y", (*y.shape[:-1], hi - lo)))
        return np.concatenate(parts, axis=-1), SplitCache(own, cut, self._pass)

    def _backward(self, state, cache: SplitCache, gy, need_gx: bool):
        if cache.pass_id != self._pass:
            raise RuntimeError("a split pass's backward must follow its forward: the worker "
                               "processes keep the latest pass only")
        cut = cache.shares
        for w, (lo, hi) in zip(self._workers, cut[1:]):
            np.copyto(w.io.array("gy", (*gy.shape[:-1], hi - lo)), gy[..., lo:hi])
            w.send({"op": "backward", "need_gx": need_gx})
        lo, hi = cut[0]
        with solo():
            gx, grads = self.model.root.backward(state, cache.own,
                                                 np.ascontiguousarray(gy[..., lo:hi]), need_gx)
        for w in self._workers:
            w.reply()
        flat = sum_gradients(flatten(grads), [lambda n, w=w: w.io.array("grad:" + n)
                                              for w in self._workers])
        if need_gx:
            gx = np.concatenate([gx] + [w.io.array("gx", (*gx.shape[:-1], hi - lo))
                                        for w, (lo, hi) in zip(self._workers, cut[1:])], -1)
        return gx, unflatten(flat)

    def peak_rss_mb(self) -> float:
        """The workers' peak resident memory, added up (shared memory counted in each)."""
        return sum(self._ask(w, {"op": "rss"})["peak_rss_mb"] for w in self._workers)

    def close(self) -> None:
        self._finalizer()
        if self._state_block is not None:
            self._state_block.close()
            self._state_block = None
        self._signature = None

    # ---- workers ------------------------------------------------------------
    def _io_entries(self, n, dtype):
        m, names = self.model, self.model.trainable_names()
        sig = dict((name, (shape, dt)) for name, shape, dt in self._signature)
        return [("x", (*m.input_shape, n), dtype), ("gx", (*m.input_shape, n), dtype),
                ("y", (*m.output_shape, n), dtype), ("gy", (*m.output_shape, n), dtype),
                ("sum", (self._sum_size,), dtype)] + \
            [("grad:" + name, *sig[name]) for name in sorted(names)]

    def _start(self, flat: dict) -> None:
        """Start the workers on the first pass, and again if the state changed shape."""
        signature = [(name, a.shape, a.dtype.str) for name, a in flat.items()]
        if signature == self._signature:
            return
        self.close()
        self._signature = signature
        self._state_block = SharedBlock.create(signature)
        self._finalizer = weakref.finalize(self, shut_down, self._workers)
        init = {"op": "init", "layers": self.model.root.model_dump(mode="json"),
                "input_shape": list(self.model.input_shape),
                "state": self._state_block.describe()}
        self._workers.extend(Worker() for _ in range(self.k - 1))
        try:
            for w in self._workers:
                w.send(init)
            for w in self._workers:
                w.reply()
        finally:
            self._state_block.unlink()  # mapped by every worker now, or never to be

    def _ask(self, w, message) -> dict:
        w.send(message)
        return w.reply()
