"""Operators over maps: convolutions, pooling, padding and LRN, ONNX attributes to layers.

ONNX writes padding per edge (``pads`` = begins then ends, or ``auto_pad``); cnnrun's layers
take one padding per axis, as PyTorch's do. Equal edges become ``padding``; unequal ones become
a ``pad`` layer in front where zeros are right (convolution, average pooling that counts the
padding), and ``ceil_mode`` where the extra edge is at the end of a max or exclusive-average
pool (an overhanging window, like padding that never wins or counts). The shape check in
``convert`` then proves each choice against the shape ONNX inferred.
"""

from __future__ import annotations

import math

import numpy as np

from .ir import IR, Node


def arg(values):
    """An int for one axis or equal axes, else a list (the config's form)."""
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else values


def edges(ir: IR, node: Node, kernel, strides, dilations) -> tuple[list[int], list[int]]:
    """(begins, ends) of the padding per spatial axis, ``auto_pad`` resolved for this input."""
    nd = len(kernel)
    auto = node.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto == "VALID":
        return [0] * nd, [0] * nd
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        sizes = ir.sample_shape(node.inputs[0])[1:]
        begins, ends = [], []
        for n, k, s, d in zip(sizes, kernel, strides, dilations):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, large = total // 2, total - total // 2
            begins.append(small if auto == "SAME_UPPER" else large)
            ends.append(large if auto == "SAME_UPPER" else small)
        return begins, ends
    pads = [int(p) for p in node.attr("pads", [0] * 2 * nd)]
    if any(p < 0 for p in pads):
        raise ir.refuse(node, f"negative pads {pads} crop the input")
    return pads[:nd], pads[nd:]


def _pad_layer(ir, node, begins, ends) -> dict:
    if len(begins) != 2:
        raise ir.refuse(node, f"unequal 1-D padding {begins}/{ends}",
                        "cnnrun pads unequal edges of 2-D maps only.")
    return {"type": "pad", "padding": [begins[0], ends[0], begins[1], ends[1]], "_node": node.name,
            "_suffix": "pad"}


def conv(ir: IR, node: Node) -> list[dict]:
    w = ir.const(node, 1, "weight")
    b = ir.const(node, 2, "bias", optional=True)
    nd = w.ndim - 2
    if nd not in (1, 2):
        raise ir.refuse(node, f"a {nd}-D convolution", "cnnrun's convolutions are 1-D and 2-D.")
    kernel = node.attr("kernel_shape") or list(w.shape[2:])
    strides, dil = node.attr("strides") or [1] * nd, node.attr("dilations") or [1] * nd
    begins, ends = edges(ir, node, kernel, strides, dil)
    spec = {"type": f"conv{nd}d", "out_channels": int(w.shape[0]), "kernel_size": arg(kernel),
            "stride": arg(strides), "padding": arg(begins) if begins == ends else 0,
            "dilation": arg(dil), "groups": int(node.attr("group", 1)), "bias": b is not None,
            "_node": node.name, "_weights": {"weight": w, **({"bias": b} if b is not None else {})}}
    table = _connections(w) if nd == 2 and spec["groups"] == 1 else None
    if table:
        spec["connections"] = table
    return [spec] if begins == ends else [_pad_layer(ir, node, begins, ends), spec]


def _connections(w: np.ndarray):
    """LeNet-5's C3 as exported: some (output, input) kernels exactly zero, none all-zero rows.
    Those links become a connection table, so the parameters count what the network uses."""
    zero = ~np.any(w.reshape(w.shape[0], w.shape[1], -1), axis=2)  # (O, I): kernel all zero
    if not zero.any() or zero.all(axis=1).any():
        return None
    return [[int(i) for i in np.flatnonzero(~row)] for row in zero]


def conv_transpose(ir: IR, node: Node) -> list[dict]:
    w = ir.const(node, 1, "weight")
    b = ir.const(node, 2, "bias", optional=True)
    if w.ndim != 4:
        raise ir.refuse(node, f"a {w.ndim - 2}-D transposed convolution",
                        "cnnrun's conv_transpose2d is 2-D.")
    if node.attr("output_shape") is not None or \
            (node.attr("auto_pad", "NOTSET") or "NOTSET") not in ("NOTSET", "VALID"):
        raise ir.refuse(node, "its output size is given by output_shape or auto_pad",
                        "Export it with explicit pads and output_padding (PyTorch does).")
    kernel = node.attr("kernel_shape") or list(w.shape[2:])
    strides, dil = node.attr("strides") or [1, 1], node.attr("dilations") or [1, 1]
    begins, ends = edges(ir, node, kernel, strides, dil)
    if begins != ends:
        raise ir.refuse(node, f"unequal pads {begins}/{ends}",
                        "cnnrun's conv_transpose2d crops both edges equally, as PyTorch's.")
    groups = int(node.attr("group", 1))
    return [{"type": "conv_transpose2d", "out_channels": int(w.shape[1]) * groups,
             "kernel_size": arg(kernel), "stride": arg(strides), "padding": arg(begins),
             "output_padding": arg(node.attr("output_padding") or [0, 0]),
             "dilation": arg(dil), "groups": groups, "bias": b is not None, "_node": node.name,
             "_weights": {"weight": w, **({"bias": b} if b is not None else {})}}]


def pool(ir: IR, node: Node) -> list[dict]:
    kernel = list(node.attr("kernel_shape", []))
    if len(kernel) != 2:
        raise ir.refuse(node, f"{len(kernel)}-D pooling", "cnnrun pools 2-D maps.")
    strides = node.attr("strides") or [1, 1]  # ONNX's default stride is 1, not the kernel
    dil = node.attr("dilations") or [1, 1]
    ceil = bool(node.attr("ceil_mode", 0))
    begins, ends = edges(ir, node, kernel, strides, dil)
    is_max = node.op == "MaxPool"
    spec = {"type": "maxpool2d" if is_max else "avgpool2d", "kernel_size": arg(kernel),
            "stride": arg(strides), "padding": arg(begins), "ceil_mode": ceil,
            "_node": node.name}
    if is_max:
        spec["dilation"] = arg(dil)
    elif dil != [1, 1]:
        raise ir.refuse(node, f"dilations {dil} on average pooling")
    else:
        spec["count_include_pad"] = bool(node.attr("count_include_pad", 0))
    if begins == ends:
        return [spec]
    if not is_max and spec["count_include_pad"]:  # zeros that count: a pad layer is exact
        return [_pad_layer(ir, node, begins, ends), {**spec, "padding": 0}]
    if ceil or any(e < b for b, e in zip(begins, ends)):
        raise ir.refuse(node, f"unequal pads {begins}/{ends}")
    return [{**spec, "ceil_mode": True}]  # the end's extra edge as an overhanging window


def global_pool(ir: IR, node: Node) -> list[dict]:
    """Alone (no flatten after it) a global pool keeps (C, 1, 1): a pool over the whole map."""
    shape = ir.sample_shape(node.inputs[0])
    if len(shape) != 3:
        raise ir.refuse(node, f"a global pool of a {len(shape) - 1}-D map",
                        "cnnrun pools 2-D maps.")
    kind = "maxpool2d" if node.op == "GlobalMaxPool" else "avgpool2d"
    return [{"type": kind, "kernel_size": arg(shape[1:]), "_node": node.name, "_global": True}]


def pad(ir: IR, node: Node) -> list[dict]:
    mode = node.attr("mode", "constant")
    if ir.opset < 11:
        pads, value = node.attr("pads", []), node.attr("value", 0.0)
    else:
        pads = ir.const(node, 1, "pads")
        value = ir.const(node, 2, "value", optional=True)
        if len(node.inputs) > 3 and node.inputs[3]:
            raise ir.refuse(node, "it pads chosen axes")
    value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
    if mode != "constant" or value != 0.0:
        raise ir.refuse(node, f"{mode} padding with value {value:g}",
                        "cnnrun's pad layer pads with zeros.")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    rank = len(pads) // 2
    if rank != 4 or pads[0] or pads[1] or pads[4] or pads[5] or min(pads) < 0:
        raise ir.refuse(node, f"pads {pads}", "cnnrun pads the height and width of (N, C, H, W).")
    return [_pad_layer(ir, node, pads[2:4], pads[6:8])]


def lrn(ir: IR, node: Node) -> list[dict]:
    size = int(node.attr("size"))
    if size % 2 == 0:
        raise ir.refuse(node, f"an even LRN size ({size}) centres its window differently in "
                              f"ONNX and PyTorch", "Use an odd size.")
    return [{"type": "local_response_norm", "size": size, "alpha": float(node.attr("alpha", 1e-4)),
             "beta": float(node.attr("beta", 0.75)), "k": float(node.attr("bias", 1.0)),
             "_node": node.name}]
