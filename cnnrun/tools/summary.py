"""The numbers of ``cnnrun summary``: one row per layer and the totals, from the layers' own
rules (no weights are allocated, so VGG-16 is instant).

Memory is an estimate per batch: parameters, their gradients and the
optimizer's state, plus the activations kept for backward: each layer's
output and what else its backward keeps (``Layer.kept_elements``: a
convolution's padded input where its weight gradient reads the input's columns).
Column matrices are never kept (``ops.conv``: they are built band by band in
each pass).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..layers import RF
from ..engine.model import Model
from ..engine.state import sequential_leaves

@dataclass
class Row:
    name: str
    type: str
    depth: int
    output_shape: tuple
    params: int
    trainable_params: int
    macs: int
    receptive_field: tuple
    jump: tuple
    start: tuple
    connections: int
    kept_elements: int  # per sample, kept for backward


def layer_rows(layer, in_shape, rf: RF, prefix: str = "", depth: int = 0) -> list[Row]:
    """This layer's row, then its children's (containers), depth-first.

    ``prefix`` ends with a dot; rows are named by dotted paths (``layer1.0.conv1``)."""
    out_rf = layer.receptive_field(rf, in_shape)
    children = []
    if hasattr(layer, "child_inputs"):
        for (name, child, shape), child_rf in zip(layer.child_inputs(in_shape),
                                                  layer.child_rf_inputs(rf, in_shape)):
            children += layer_rows(child, shape, child_rf, f"{prefix}{name}.", depth + 1)
        kept = sum(r.kept_elements for r in children if r.depth == depth + 1)
    else:
        kept = math.prod(layer.output_shape(in_shape)) + layer.kept_elements(in_shape)
    row = Row(prefix.rstrip("."), layer.type, depth, tuple(layer.output_shape(in_shape)),
              layer.n_params(in_shape), layer.n_trainable(in_shape), layer.macs(in_shape),
              out_rf.size, out_rf.jump, out_rf.start, layer.connections(in_shape), kept)
    return [row] + children


def summarize(model: Model, train_cfg=None, batch_size: int | None = None) -> dict:
    rf0 = RF.of_input(model.input_shape[1:])
    rows = []
    for (name, child, shape), child_rf in zip(model.root.child_inputs(model.input_shape),
                                              model.root.child_rf_inputs(rf0, model.input_shape)):
        rows += layer_rows(child, shape, child_rf, f"{name}.")
    total = model.n_params()
    trainable = model.root.n_trainable(model.input_shape)
    macs = model.macs()
    result = {"input_shape": list(model.input_shape), "output_shape": list(model.output_shape),
              "layers": [_row_dict(r) for r in rows], "total_params": total,
              "trainable_params": trainable, "total_macs": macs, "total_flops": 2 * macs}
    if train_cfg is not None:
        result["memory"] = memory(rows, total, trainable, train_cfg, batch_size)
    return result


def memory(rows, total, trainable, t, batch_size=None) -> dict:
    item = 4 if t.dtype == "float32" else 8
    batch = batch_size or t.batch_size
    slots = t.optimizer.slots()  # the optimizer's own count (optim/optimizers.py)
    top = [r for r in rows if r.depth == 0]
    acts = sum(r.kept_elements for r in top) * batch * item
    m = {"batch_size": batch, "parameters_bytes": total * item,
         "gradients_bytes": trainable * item, "optimizer_bytes": slots * trainable * item,
         "activations_bytes": acts}
    m["peak_bytes"] = sum(v for k, v in m.items() if k.endswith("_bytes"))
    return m


def _row_dict(r: Row) -> dict:
    d = asdict(r)
    d["output_shape"] = list(r.output_shape)
    d["receptive_field"] = list(r.receptive_field)
    d["jump"], d["start"] = list(r.jump), list(r.start)
    return d


def extents_to_target(model: Model, target: str) -> dict[str, tuple]:
    """Wu's convention: for each layer up to ``target``, the extent in that layer's *input*
    needed to compute one unit of the target's output: e_in = (e_out − 1)·stride + k_eff."""
    from ..errors import UserError
    chain = sequential_leaves(model.root, model.input_shape)
    if chain is None:
        raise UserError("--rf-target: this network branches (residual, concat or dense "
                        "blocks); Wu's per-layer extents are defined for a chain of layers.")
    names = [n for n, _, _ in chain]
    if target not in names:
        raise UserError(f"--rf-target {target}: no such layer; layers: {', '.join(names)}.")
    extents, e = {}, None
    for name, layer, shape in reversed(chain[:names.index(target) + 1]):
        own = layer.receptive_field(RF.of_input(shape[1:]), shape)  # this layer alone
        e = (1,) * len(own.size) if e is None else e
        e = tuple((ei - 1) * j + k for ei, j, k in zip(e, own.jump, own.size))
        extents[name] = e
    return dict(reversed(extents.items()))  # in forward order, input first


def attach_extents(s: dict, target: str, extents: dict) -> dict:
    """Add Wu's extents to summary rows; a container shows its first layer's."""
    s["rf_target"] = target
    for row in s["layers"]:
        inside = [n for n in extents if n == row["name"] or n.startswith(row["name"] + ".")]
        if inside:
            row["extent_to_target"] = list(extents[inside[0]])
    return s


def load_model(config, overrides):
    """The validated config and its model (shapes checked, no weights allocated)."""
    from ..config import load_config
    cfg = load_config(config, overrides or [])
    return cfg, Model(cfg.model.layers, cfg.model.input_shape)


def summarize_config(config, overrides, rf_target: str | None = None) -> dict:
    """``cnnrun summary``: the rows and totals of a config, with Wu's extents if asked."""
    cfg, model = load_model(config, overrides)
    s = summarize(model, cfg.train)
    if rf_target:
        attach_extents(s, rf_target, extents_to_target(model, rf_target))
    return s
