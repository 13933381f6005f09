"""Where a training step's time goes, leaf layer by leaf layer (``cnnrun bench --profile``).

Every leaf of the model (a convolution, a batch norm, the ReLU inside a residual
block …) is timed in its forward and backward passes, and the times are summed
over the leaves that do the same work: the same type, weight shape and input
shape. ResNet-20's eighteen 3×3 convolutions fall into three rows, one per stage,
which is the granularity at which two engines can be compared (PyTorch's
profiler groups its operators by input shape the same way). Containers are not
timed themselves: their leaves are, so nothing is counted twice.

The timers wrap the leaf classes' ``forward`` and ``backward`` only inside a
``with LeafProfile(model):`` block, and time only that model's leaves; the engine
carries no instrumentation of its own.
"""

from __future__ import annotations

import time
from collections import defaultdict

from .model import leaves

_PASSES = ("forward", "backward")


def leaf_kind(leaf, in_shape) -> tuple:
    """(type, weight shape or None, input shape, output shape): what makes two leaves'
    work alike."""
    weight = leaf.param_shapes(in_shape).get("weight")
    return (leaf.type, tuple(weight) if weight else None, tuple(in_shape),
            tuple(leaf.output_shape(in_shape)))


class LeafProfile:
    """Seconds spent in each kind of leaf, forward and backward, while the block runs."""

    def __init__(self, model, sync=lambda: None):
        self.sync = sync  # waits for a GPU's queued kernels before the clock is read
        found = list(leaves(model.root, model.input_shape))
        self.kind = {id(leaf): leaf_kind(leaf, shape) for _, leaf, shape in found}
        self.classes = list(dict.fromkeys(type(leaf) for _, leaf, _ in found))  # model order
        self.seconds = defaultdict(lambda: [0.0, 0.0])  # kind → [forward, backward]
        self.calls = defaultdict(int)  # kind → forward calls
        self._saved = {}
        self.wall = 0.0  # seconds inside the block
        self._start = 0.0

    def __enter__(self):
        # Every original is read before any is replaced: a subclass that inherits its
        # forward would otherwise pick up its parent's timer and be timed twice.
        originals = {(cls, name): getattr(cls, name) for cls in self.classes for name in _PASSES}
        for (cls, name), original in originals.items():
            self._saved[(cls, name)] = cls.__dict__.get(name)
            setattr(cls, name, self._timed(original, _PASSES.index(name)))
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._start
        for (cls, name), own in self._saved.items():
            if own is None:
                delattr(cls, name)  # it was inherited: uncover the parent's again
            else:
                setattr(cls, name, own)
        self._saved.clear()

    def _timed(self, original, slot: int):
        def timed(layer, *args, **kwargs):
            kind = self.kind.get(id(layer))
            if kind is None:  # a leaf of another model
                return original(layer, *args, **kwargs)
            self.sync()  # a container's queued GPU work is not this leaf's
            t0 = time.perf_counter()
            out = original(layer, *args, **kwargs)
            self.sync()
            self.seconds[kind][slot] += time.perf_counter() - t0
            self.calls[kind] += slot == 0
            return out
        return timed

    def rows(self, steps: int) -> list[dict]:
        """Per step, the most expensive kind first, then the rest of the block's time (the
        containers' own work such as residual additions, the loss, the optimizer) as
        type "rest"; shares of the block's time."""
        wall = max(self.wall, 1e-12)
        out = [{"type": kind[0], "weight": kind[1] and list(kind[1]), "input": list(kind[2]),
                "output": list(kind[3]),
                "calls": self.calls[kind] / steps, "forward_ms": 1e3 * f / steps,
                "backward_ms": 1e3 * b / steps, "total_ms": 1e3 * (f + b) / steps,
                "share": (f + b) / wall}
               for kind, (f, b) in self.seconds.items()]
        out.sort(key=lambda r: -r["share"])
        rest = wall - sum(f + b for f, b in self.seconds.values())
        out.append({"type": "rest", "weight": None, "input": None, "output": None, "calls": None,
                    "forward_ms": None, "backward_ms": None, "total_ms": 1e3 * rest / steps,
                    "share": rest / wall})
        return out
