"""Branching containers: residual add, channel concatenation, DenseNet's dense layer."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import model_validator

from ..backend import get_array_module
from ..registry import LAYERS
from .base import ShapeError, memo_by_shape
from .containers import (Container, Sequential, check_unique, fold_rf, freeze_children, named,
                         sequence_backward, sequence_forward, sequence_r_backward,
                         sequence_r_forward, sequence_shapes, widest)

_CONV = {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}

if TYPE_CHECKING:  # the union of all layers, built in layers/__init__.py
    from . import AnyLayer  # noqa: F401


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


@LAYERS.register("residual")
class Residual(Container):
    """y = body(x) + shortcut(x); the shortcut is the identity when empty, else e.g. a
    1×1 projection. Body children share this block's namespace (``conv1``, ``bn1``);
    the shortcut's sit under ``shortcut_name`` (torchvision calls it ``downsample``).
    ``after`` layers run on the sum (ResNet's ReLU); their parameters, if any, sit under
    ``after``."""

    type: Literal["residual"] = "residual"
    body: list["AnyLayer"]
    shortcut: list["AnyLayer"] = []
    shortcut_name: str = "shortcut"
    after: list["AnyLayer"] = []
    examples: ClassVar = (
        ({"body": [_CONV, {"type": "tanh"}, _CONV], "after": [{"type": "relu"}]}, (2, 6, 6)),
        ({"body": [{**_CONV, "stride": 2}], "shortcut": [
            {"type": "conv2d", "out_channels": 2, "kernel_size": 1, "stride": 2}]}, (3, 5, 5)),
    )

    @model_validator(mode="before")
    @classmethod
    def _freeze(cls, data):
        return freeze_children(data, ("body", "shortcut", "after"))

    @model_validator(mode="after")
    def _unique_names(self):
        check_unique(self.children(), self.label())
        return self

    @cached_property
    def _shortcut(self):
        return Sequential.of(self.shortcut, self.shortcut_name)

    @cached_property
    def _after(self):
        return Sequential.of(self.after, "after")

    def children(self):
        extra = [(self.shortcut_name, self._shortcut)] if self.shortcut else []
        return named(self.body) + extra + ([("after", self._after)] if self.after else [])

    @memo_by_shape
    def child_inputs(self, in_shape):
        body = named(self.body)
        shapes = sequence_shapes(body, in_shape)
        out = [(n, c, s) for (n, c), s in zip(body, shapes)]
        if self.shortcut:
            out.append((self.shortcut_name, self._shortcut, tuple(in_shape)))
        if self.after:
            out.append(("after", self._after, shapes[-1]))
        return out

    @memo_by_shape
    def output_shape(self, in_shape):
        body_out = sequence_shapes(named(self.body), in_shape, "body")[-1]
        try:
            short_out = self._shortcut.output_shape(in_shape)
        except ShapeError as e:
            raise e.within("shortcut", *e.path[1:]) from None
        if body_out != short_out:
            raise ShapeError(f"{self.label()}: the body gives {body_out} but the shortcut gives "
                             f"{short_out}; add a projection shortcut (e.g. a 1×1 conv2d with "
                             f"the body's stride) so they can be added")
        return body_out

    def _sum_rf(self, rf, in_shape):
        body = Sequential.of(self.body).receptive_field(rf, in_shape)
        return widest([body, self._shortcut.receptive_field(rf, in_shape)], self.label())

    @memo_by_shape
    def receptive_field(self, rf, in_shape):
        body_out = sequence_shapes(named(self.body), in_shape, "body")[-1]
        return self._after.receptive_field(self._sum_rf(rf, in_shape), body_out)

    @memo_by_shape
    def child_rf_inputs(self, rf, in_shape):
        inputs = self.child_inputs(in_shape)
        body = fold_rf(inputs[:len(self.body)], rf)
        return body + ([rf] if self.shortcut else []) + \
            ([self._sum_rf(rf, in_shape)] if self.after else [])

    def to_onnx(self, g, x, p, in_shape):
        inputs = self.child_inputs(in_shape)
        body = g.chain(inputs[:len(self.body)], x, p, in_shape)
        short = self._shortcut.to_onnx(g, x, p.get(self.shortcut_name, {}), in_shape)
        out_shape = self.output_shape(in_shape)
        return self._after.to_onnx(g, g.op("Add", body, short), p.get("after", {}), out_shape)

    def forward(self, p, x, ctx):
        yb, cb = sequence_forward(named(self.body), p, x, ctx)
        ys, cs = self._shortcut.forward(p.get(self.shortcut_name, {}), x, ctx)
        y, ca = self._after.forward(p.get("after", {}), yb + ys, ctx)
        return y, (cb, cs, ca)

    def backward(self, p, cache, gy, need_gx=True):
        cb, cs, ca = cache
        # the sum feeds both branches, so the after-part always passes its input gradient on
        gy, ga = self._after.backward(p.get("after", {}), ca, gy, True)
        gxb, grads = sequence_backward(named(self.body), p, cb, gy, need_gx)
        if ga:
            grads["after"] = ga
        gxs, gs = self._shortcut.backward(p.get(self.shortcut_name, {}), cs, gy, need_gx)
        if gs:
            grads[self.shortcut_name] = gs
        return (_add(gxb, gxs) if need_gx else None), grads

    def r_forward(self, p, v, rx, cache, ctx):
        cb, cs, ca = cache
        sc = self.shortcut_name
        rb, rcb = sequence_r_forward(named(self.body), p, v, rx, cb, ctx)
        rs, rcs = self._shortcut.r_forward(p.get(sc, {}), v.get(sc, {}), rx, cs, ctx)
        ra, rca = self._after.r_forward(p.get("after", {}), v.get("after", {}), rb + rs, ca, ctx)
        return ra, (rcb, rcs, rca)

    def r_backward(self, p, v, cache, rcache, gy, rgy):
        (cb, cs, ca), (rcb, rcs, rca) = cache, rcache
        sc, pa, va = self.shortcut_name, p.get("after", {}), v.get("after", {})
        g_sum = self._after.backward(pa, ca, gy, True)[0]
        rg_sum, rga = self._after.r_backward(pa, va, ca, rca, gy, rgy)
        rgx, rgrads = sequence_r_backward(named(self.body), p, v, cb, rcb, g_sum, rg_sum)
        rgs_x, rgs = self._shortcut.r_backward(p.get(sc, {}), v.get(sc, {}), cs, rcs, g_sum,
                                               rg_sum)
        for key, val in (("after", rga), (sc, rgs)):
            if val:
                rgrads[key] = val
        return rgx + rgs_x, rgrads


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
        ({"branches": [[], [_CONV], [{**_CONV, "kernel_size": 1, "padding": 0}, {"type": "relu"}]]},
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
            gx = _add(gx, gb) if need_gx else None
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
            rgx = _add(rgx, rb)
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
        ({"body": [{"type": "batchnorm2d"}, {"type": "relu"}, _CONV]}, (3, 4, 4)),
    )

    @model_validator(mode="before")
    @classmethod
    def _freeze(cls, data):
        return freeze_children(data, ("body",))

    def children(self):
        return named(self.body)

    @memo_by_shape
    def child_inputs(self, in_shape):
        shapes = sequence_shapes(self.children(), in_shape)
        return [(n, c, s) for (n, c), s in zip(self.children(), shapes)]

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
