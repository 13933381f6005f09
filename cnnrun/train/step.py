"""One training step on this process's share of a global batch: forward, the loss over the
whole batch, backward, the gradients summed over every rank, the penalty, clipping and the
update.

With one process the share is the batch. Under MPI (``engine/parallel/world.py``) each rank
holds samples lo … hi−1: its dropout draws from those samples' streams, its batch norm adds
its sums to the other ranks', its outputs are gathered so that the loss and its gradient are
the whole batch's on every rank, and its parameter gradients are added to theirs. Every rank
then takes the same update, so the weights stay equal without being sent.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import STREAM_CURVATURE, STREAM_DROPOUT
from ..engine.state import flatten
from ..errors import RunFailed
from ..layers.streams import SampleStreams
from ..ops.backend import to_device, to_numpy
from ..ops.layout import to_engine
from ..optim.curvature import estimate_gn_diagonal


class TrainStep:
    def __init__(self, trainer):
        self.t = trainer  # the model, state, optimizer, schedule and world it steps

    def __call__(self, x, y) -> tuple[float, int]:
        """The loss and the number of correct predictions of the whole batch."""
        t, cfg = self.t, self.t.cfg.train
        world, xp, n = t.world, t.xp, len(y)
        lo, hi = world.share(n)
        xe = to_engine(to_device(x, xp))  # this rank's samples
        labels = to_device(y, xp)  # the whole batch's
        streams = SampleStreams([cfg.seed, STREAM_DROPOUT, t.step], first=lo)
        out, cache = t.model.forward(t.state, xe, train=True, rng=streams,
                                     sums=world.sums(hi - lo, n))
        out = self._whole(out, n)
        loss, g = t.loss_fn.value_and_grad(out, labels)
        loss = float(loss)  # a host sync; needed for the NaN check and the progress bar
        if not math.isfinite(loss):
            self._diverged(loss)
        gy = xp.ascontiguousarray(g[..., lo:hi])
        gflat = world.reduce_gradients(flatten(t.model.backward(t.state, cache, gy)[1]))
        penalty, pgrads = t.model.penalty(t.state)  # e.g. sparsity of learned map mixes
        if pgrads:  # after the sum over ranks: every rank adds the same penalty once
            loss += penalty
            for name, pg in pgrads.items():
                gflat[name] = gflat[name] + pg
        if cfg.grad_clip_norm:
            clip_by_global_norm(gflat, cfg.grad_clip_norm)
        if t.optimizer.needs_curvature(t.step):
            self._curvature(xe, labels)
        t.optimizer.step(t.flat, gflat, t.lr())
        return loss, int((out.argmax(axis=0) == labels).sum())

    def _whole(self, out, n):
        """The whole batch's outputs on every rank (this process's own without MPI)."""
        world = self.t.world
        if world.size == 1:
            return out
        return to_device(world.gather_batch(to_numpy(out), n), self.t.xp)

    def _curvature(self, xe, labels):
        t, cfg = self.t, self.t.cfg.train
        probe_rng = np.random.default_rng([cfg.seed, STREAM_CURVATURE, t.step])
        t.optimizer.set_curvature(estimate_gn_diagonal(
            t.model, t.state, xe, labels, t.loss_fn, cfg.optimizer.probes, probe_rng,
            lambda: SampleStreams([cfg.seed, STREAM_DROPOUT, t.step])))

    def _diverged(self, loss: float):
        t = self.t
        raise RunFailed(f"the loss became {loss} at epoch {t.epoch + 1}, step "
                        f"{t.step + 1}; training stopped and {t.what_was_kept()}. Lower "
                        f"train.optimizer.lr, set train.grad_clip_norm, or check the data.")


def clip_by_global_norm(grads: dict, max_norm: float) -> float:
    """Scale all gradients so that their joint L2 norm is at most max_norm (PyTorch's rule)."""
    total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total
