"""The residual block: a body and a shortcut added (concatenating blocks: concat.py)."""

from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import model_validator

from ..registry import LAYERS
from .base import ShapeError, memo_by_shape
from .containers import (Container, Sequential, check_unique, fold_rf, freeze_children, named,
                         sequence_backward, sequence_forward, sequence_r_backward,
                         sequence_r_forward, sequence_shapes, widest)

EXAMPLE_CONV = {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}

if TYPE_CHECKING:  # the union of all layers, built in layers/__init__.py
    from . import AnyLayer  # noqa: F401


def add_gradients(a, b):
    """a + b where either may be None (a branch that passed no gradient)."""
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
        ({"body": [EXAMPLE_CONV, {"type": "tanh"}, EXAMPLE_CONV], "after": [{"type": "relu"}]}, (2, 6, 6)),
        ({"body": [{**EXAMPLE_CONV, "stride": 2}], "shortcut": [
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
        return (add_gradients(gxb, gxs) if need_gx else None), grads

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
