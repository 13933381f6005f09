"""Where a training step's time goes, leaf layer by leaf layer (``cnnrun bench --profile``).

Every leaf of the model (a convolution, a batch norm, the ReLU inside a residual
block …) is timed in its forward and backward passes, and the times are summed
over the leaves that do the same work: the same type, weight shape and input
shape. ResNet-20's eighteen 3×3 convolutions fall into three rows, one per stage,
which is the granularity at which two engines can be compared (PyTorch's
profiler groups its operators by input shape the same way). Containers are not
timed themselves: their leaves are, so nothing is counted twice.

The profile is a set of hooks of the chain runner (``layers/chain.py``), active only
inside a ``with LeafProfile(model):`` block, and it times only that model's leaves; the
layers carry no instrumentation of their own and no class is patched.
"""

from __future__ import annotations

import time
from collections import defaultdict

from ..engine.state import leaves
from ..layers.chain import Hooks, hooked

_PASSES = ("forward", "backward")


def leaf_kind(leaf, in_shape) -> tuple:
    """(type, weight shape or None, input shape, output shape): what makes two leaves'
    work alike."""
    weight = leaf.param_shapes(in_shape).get("weight")
    return (leaf.type, tuple(weight) if weight else None, tuple(in_shape),
            tuple(leaf.output_shape(in_shape)))


class LeafProfile(Hooks):
    """Seconds spent in each kind of leaf, forward and backward, while the block runs."""

    def __init__(self, model, sync=lambda: None):
        self.sync = sync  # waits for a GPU's queued kernels before the clock is read
        self.kind = {id(leaf): leaf_kind(leaf, shape)
                     for _, leaf, shape in leaves(model.root, model.input_shape)}
        self.seconds = defaultdict(lambda: [0.0, 0.0])  # kind → [forward, backward]
        self.calls = defaultdict(int)  # kind → forward calls
        self.wall = 0.0  # seconds inside the block
        self._start = 0.0
        self._hooked = None

    def __enter__(self):
        self._hooked = hooked(self)
        self._hooked.__enter__()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._start
        self._hooked.__exit__(*exc)

    def around(self, layer, which, call):
        kind = self.kind.get(id(layer))
        if kind is None:  # a container, or a layer of another model
            return call()
        self.sync()  # a container's queued GPU work is not this leaf's
        t0 = time.perf_counter()
        out = call()
        self.sync()
        slot = _PASSES.index(which)
        self.seconds[kind][slot] += time.perf_counter() - t0
        self.calls[kind] += slot == 0
        return out

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
