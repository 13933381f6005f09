"""The one chain runner: forward and backward through a sequence of layers, with hooks.

Every container runs its children through these functions, and so do the tools that walk a
network part-way (``analysis``), time it layer by layer (``bench``) or leaf by leaf
(``profile``). A tool that wants to see each layer's pass installs ``Hooks`` for the
duration of a block (``with hooked(h):``); its ``around(layer, which, call)`` is then called
for every layer the runner runs, containers and leaves alike, at any depth, and must return
``call()``'s result. Without hooks the runner costs one context-variable read per layer.

A step is ``(layer, params)``: the layer and its own sub-tree of the state.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

_HOOKS: ContextVar = ContextVar("cnnrun_chain_hooks", default=None)


class Hooks:
    """Override ``around`` to observe each layer's pass: ``which`` is 'forward' or 'backward'."""

    def around(self, layer, which: str, call):
        return call()


@contextmanager
def hooked(hooks: Hooks | None):
    """Run the block with ``hooks`` seeing every layer pass (None: no hooks)."""
    token = _HOOKS.set(hooks)
    try:
        yield hooks
    finally:
        _HOOKS.reset(token)


def forward_one(layer, p, x, ctx):
    hooks = _HOOKS.get()
    if hooks is None:
        return layer.forward(p, x, ctx)
    return hooks.around(layer, "forward", lambda: layer.forward(p, x, ctx))


def backward_one(layer, p, cache, gy, need_gx):
    hooks = _HOOKS.get()
    if hooks is None:
        return layer.backward(p, cache, gy, need_gx)
    return hooks.around(layer, "backward", lambda: layer.backward(p, cache, gy, need_gx))


def chain_forward(steps, x, ctx):
    """The last output and every step's cache (None each, where no backward will follow:
    then each layer's input and saved arrays are freed as soon as the next layer has run,
    and an inference pass holds about one layer's arrays rather than the network's)."""
    caches = []
    for layer, p in steps:
        x, cache = forward_one(layer, p, x, ctx)
        caches.append(cache if ctx.keep_caches else None)
    return x, caches


def chain_backward(steps, caches, gy, need_gx: bool = True, stop: int = 0):
    """∂E/∂(input of step ``stop``) and each step's parameter gradients (None below stop).

    Steps below ``stop`` are not run: nothing there is trainable and no input gradient is
    wanted. Step ``stop`` itself passes an input gradient on only if ``need_gx``."""
    grads = [None] * len(steps)
    for i in range(len(steps) - 1, stop - 1, -1):
        layer, p = steps[i]
        gy, grads[i] = backward_one(layer, p, caches[i], gy, need_gx or i > stop)
    return gy, grads
