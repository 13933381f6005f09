"""Containers that join by channel concatenation: Inception-style branches, DenseNet's layer."""

from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import model_validator

from ..ops.backend import get_array_module
from ..registry import LAYERS
from .base import ShapeError, memo_by_shape
from .branches import EXAMPLE_CONV, add_gradients
from .containers import (Container, Sequential, fold_rf, freeze_children, named,
                         sequence_backward, sequence_forward, sequence_r_backward,
                         sequence_inputs, sequence_r_forward, sequence_shapes, widest)

if TYPE_CHECKING:  # the union of all layers, built in layers/__init__.py
    from . import AnyLayer  # noqa: F401


def split_channels(xp, g, sizes):
    """Split along the channel axis 0 into pieces of the given sizes."""
    bounds = [sum(sizes[:i + 1]) for i in range(len(sizes) - 1)]
    return xp.split(g, bounds, axis=0)


def concat_shape(where, shapes):
    if len({s[1:] for s in shapes}) > 1:
        raise ShapeError(f"{where}: branches give {', '.join(map(str, shapes))}; only the channel "
                         f"counts may differ to concatenate them")
    return (sum(s[0] for s in shapes), *shapes[0][1:])


@LAYERS.register("concat")
class Concat(Container):
    """Parallel branches joined by channel concatenation (Inception-style).

    Each branch is a list of layers run on the same input; an empty list is the
    identity. Branch i's parameters sit under ``i``. Output (ΣC_i, H, W)."""

    type: Literal["concat"] = "concat"
    branches: list[list["AnyLayer"]]
    examples: ClassVar = (
        ({"branches": [[], [EXAMPLE_CONV], [{**EXAMPLE_CONV, "kernel_size": 1, "padding": 0}, {"type": "relu"}]]},
         (2, 4, 4)),
    )

    @model_validator(mode="before")
    @classmethod
    def _freeze(cls, data):
        return freeze_children(data, ("branches",))

    @cached_property
    def _branches(self):
        return [(str(i), Sequential.of(b)) for i, b in enumerate(self.branches)]

    def children(self):
        return self._branches

    @memo_by_shape
    def child_inputs(self, in_shape):
        return [(n, c, tuple(in_shape)) for n, c in self._branches]

    @memo_by_shape
    def output_shape(self, in_shape):
        shapes = []
        for b, (_, branch) in enumerate(self._branches):
            try:
                shapes.append(branch.output_shape(in_shape))
            except ShapeError as e:
                raise e.within("branches", b, *e.path[1:]) from None
        return concat_shape(self.label(), shapes)

    @memo_by_shape
    def receptive_field(self, rf, in_shape):
        return widest([c.receptive_field(rf, in_shape) for _, c in self._branches], self.label())

    @memo_by_shape
    def child_rf_inputs(self, rf, in_shape):
        return [rf] * len(self._branches)

    def to_onnx(self, g, x, p, in_shape):
        outs = [c.to_onnx(g, x, p.get(n, {}), in_shape) for n, c in self._branches]
        return g.op("Concat", *outs, axis=1)

    def forward(self, p, x, ctx):
        xp = get_array_module(x)
        outs, caches = zip(*(c.forward(p.get(n, {}), x, ctx) for n, c in self._branches))
        return xp.concatenate(outs, axis=0), (caches, [o.shape[0] for o in outs])

    def backward(self, p, cache, gy, need_gx=True):
        caches, sizes = cache
        gx, grads = None, {}
        pieces = split_channels(get_array_module(gy), gy, sizes)
        for (n, c), cc, g in zip(self._branches, caches, pieces):
            gb, gp = c.backward(p.get(n, {}), cc, g, need_gx)
            gx = add_gradients(gx, gb) if need_gx else None
            if gp:
                grads[n] = gp
        return gx, grads

    def r_forward(self, p, v, rx, cache, ctx):
        caches, _ = cache
        xp = get_array_module(rx)
        outs, rcaches = zip(*(c.r_forward(p.get(n, {}), v.get(n, {}), rx, cc, ctx)
                              for (n, c), cc in zip(self._branches, caches)))
        return xp.concatenate(outs, axis=0), rcaches

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        caches, sizes = cache
        xp = get_array_module(gy)
        rgx, rgrads = None, {}
        for (n, c), cc, rc, g, rg in zip(self._branches, caches, rcache,
                                         split_channels(xp, gy, sizes),
                                         split_channels(xp, rgy, sizes)):
            rb, rp = c.r_backward(p.get(n, {}), v.get(n, {}), cc, rc, g, rg)
            rgx = add_gradients(rgx, rb)
            if rp:
                rgrads[n] = rp
        return rgx, rgrads


@LAYERS.register("dense")
class Dense(Container):
    """DenseNet's layer: y = concat(x, body(x)) along channels. The body's children
    share this block's namespace (``norm1``, ``conv1``, … as in torchvision)."""

    type: Literal["dense"] = "dense"
    body: list["AnyLayer"]
    examples: ClassVar = (
        ({"body": [{"type": "batchnorm2d"}, {"type": "relu"}, EXAMPLE_CONV]}, (3, 4, 4)),
    )

    @model_validator(mode="before")
    @classmethod
    def _freeze(cls, data):
        return freeze_children(data, ("body",))

    def children(self):
        return named(self.body)

    @memo_by_shape
    def child_inputs(self, in_shape):
        return sequence_inputs(self.children(), in_shape)

    @memo_by_shape
    def output_shape(self, in_shape):
        body_out = sequence_shapes(self.children(), in_shape, "body")[-1]
        return concat_shape(self.label(), [tuple(in_shape), body_out])

    @memo_by_shape
    def receptive_field(self, rf, in_shape):
        return widest([rf, Sequential.of(self.body).receptive_field(rf, in_shape)],
                      self.label())

    @memo_by_shape
    def child_rf_inputs(self, rf, in_shape):
        return fold_rf(self.child_inputs(in_shape), rf)

    def to_onnx(self, g, x, p, in_shape):
        return g.op("Concat", x, g.chain(self.child_inputs(in_shape), x, p, in_shape), axis=1)

    def forward(self, p, x, ctx):
        xp = get_array_module(x)
        y, caches = sequence_forward(self.children(), p, x, ctx)
        return xp.concatenate([x, y], axis=0), (caches, x.shape[0])

    def backward(self, p, cache, gy, need_gx=True):
        caches, C = cache
        gb, grads = sequence_backward(self.children(), p, caches, gy[C:], need_gx)
        return ((gy[:C] + gb) if need_gx else None), grads

    def r_forward(self, p, v, rx, cache, ctx):
        caches, _ = cache
        ry, rcaches = sequence_r_forward(self.children(), p, v, rx, caches, ctx)
        return get_array_module(rx).concatenate([rx, ry], axis=0), rcaches

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        caches, C = cache
        rgb, rgrads = sequence_r_backward(self.children(), p, v, caches, rcache, gy[C:], rgy[C:])
        return rgy[:C] + rgb, rgrads
