"""Random numbers drawn sample by sample, so that a share of a batch draws what the whole
batch would have drawn for its samples.

Dropout's mask for sample i of a training step comes from its own generator, seeded by
(key, call, i): the run's seed and step in ``key``, the dropout layer's place in the pass
(``call``, counted as layers draw), and i the sample's position in the *whole* batch. A
process that computes samples lo … hi−1 of the batch (a local worker, an MPI rank) holds
``streams.share(lo)`` and draws the same numbers as one process computing all of them, so
a network with dropout trains identically on 1 process or K. One generator per sample and
draw costs a few µs, against the layers around a dropout's megabytes of activations.

A plain ``numpy.random.Generator`` in ``Context.rng`` still works, drawing the whole
batch's mask at once (tests, tools): such a pass cannot be cut into shares.
"""

from __future__ import annotations

from ..ops.backend import get_array_module, to_device


class SampleStreams:
    def __init__(self, key, first: int = 0):
        self.key, self.first, self.calls = tuple(int(k) for k in key), int(first), 0

    def share(self, first: int) -> "SampleStreams":
        """The streams of a share whose first sample is ``first`` of the whole batch, from
        this one's position (a share of a share adds the offsets)."""
        return SampleStreams(self.key, self.first + first)

    def random(self, shape, dtype="float64", like=None):
        """Uniform [0, 1) numbers of ``shape`` (batch last), each sample's from its stream,
        in the array namespace of ``like`` (NumPy by default)."""
        import numpy as np  # lazily: `cnnrun summary` imports the layers, never NumPy
        call, self.calls = self.calls, self.calls + 1
        *per, n = shape
        out = np.empty((n, *per), dtype=dtype)  # sample-major while drawing: one copy each
        for i in range(n):
            gen = np.random.default_rng([*self.key, call, self.first + i])
            out[i] = gen.random(per, dtype=out.dtype)
        batch_last = np.moveaxis(out, 0, -1)  # (n, …) -> (…, n)
        return batch_last if like is None else to_device(batch_last, get_array_module(like))


def draw_uniform(rng, x):
    """Uniform numbers of x's shape, dtype and namespace from ``Context.rng``."""
    if isinstance(rng, SampleStreams):
        return rng.random(x.shape, x.dtype, like=x)
    return rng.random(x.shape, dtype=x.dtype)
