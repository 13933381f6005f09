"""The operator table: one rule per ONNX operator, each a node to registry layer specs.

A spec is the layer's config dict plus private keys the later passes read and then drop:
``_node`` (the ONNX node it came from, for its name), ``_weights`` (arrays in cnnrun's, that
is PyTorch's, layouts under the layer's parameter names) and ``_scalar`` (a Mul by one number,
which ``patterns`` may fold into a slope). Merges (``Add``/``Sum``/``Concat`` of two data
tensors) are not here: ``series_parallel`` turns them into containers.
"""

from __future__ import annotations

import numpy as np

from . import spatial
from .ir import IR, Node

MERGES = {"Add", "Sum", "Concat"}


def batch_norm(ir: IR, node: Node) -> list[dict]:
    if node.attr("training_mode", 0) or node.attr("spatial", 1) == 0:
        raise ir.refuse(node, "it normalises by batch statistics or per position",
                        "Export the model in evaluation mode.")
    scale, shift, mean, var = (ir.const(node, i, what) for i, what in
                               enumerate(("scale", "bias", "running mean", "running variance"), 1))
    rank = len(ir.sample_shape(node.inputs[0]))
    if rank > 3:
        raise ir.refuse(node, f"a batch norm of {rank - 1}-D maps",
                        "cnnrun normalises features, 1-D and 2-D maps.")
    return [{"type": "batchnorm2d" if rank == 3 else "batchnorm1d",
             "eps": float(node.attr("epsilon", 1e-5)),
             "momentum": round(1.0 - float(node.attr("momentum", 0.9)), 6), "_node": node.name,
             "_weights": {"weight": scale, "bias": shift, "running_mean": mean,
                          "running_var": var}}]


def gemm(ir: IR, node: Node) -> list[dict]:
    _features_in(ir, node)
    if node.attr("transA", 0):
        raise ir.refuse(node, "transA=1 multiplies by the transposed batch")
    b = ir.const(node, 1, "weight")
    w = (b if node.attr("transB", 0) else b.T) * np.float32(node.attr("alpha", 1.0))  # (out, in)
    c = ir.const(node, 2, "bias", optional=True)
    spec = {"type": "linear", "out_features": int(w.shape[0]), "bias": c is not None,
            "_node": node.name, "_weights": {"weight": w.astype(b.dtype)}}
    if c is not None:
        if c.size not in (1, w.shape[0]):
            raise ir.refuse(node, f"a bias of shape {c.shape} differs per sample")
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * np.float32(node.attr("beta", 1.0))
        spec["_weights"]["bias"] = bias.astype(c.dtype)
    return [spec]


def matmul(ir: IR, node: Node) -> list[dict]:
    _features_in(ir, node)
    w = ir.const(node, 1, "weight")
    if w.ndim != 2:
        raise ir.refuse(node, f"a weight of rank {w.ndim}")
    return [{"type": "linear", "out_features": int(w.shape[1]), "bias": False,
             "_node": node.name, "_weights": {"weight": np.ascontiguousarray(w.T)}}]


def _features_in(ir, node):
    if len(ir.sample_shape(node.inputs[0])) != 1:
        raise ir.refuse(node, f"it multiplies a {ir.shapes[node.inputs[0]]} tensor",
                        "Flatten the maps before the fully connected layer.")


def reshape(ir: IR, node: Node) -> list[dict]:
    """Flatten, Reshape and Squeeze are a flatten when they give (N, C·H·W)."""
    x, y = ir.shapes[node.inputs[0]], ir.shapes[node.output]
    if y == x:
        return []
    if y[0] == x[0] and y[1:] == (int(np.prod(x[1:])),):
        return [{"type": "flatten", "_node": node.name}] if len(x) > 2 else []
    raise ir.refuse(node, f"it reshapes {x} to {y}",
                    "cnnrun reshapes only to (N, -1) (a flatten) or in a channel shuffle.")


def softmax(ir: IR, node: Node) -> list[dict]:
    rank = len(ir.shapes[node.inputs[0]])
    old = ir.opset < 13  # before 13: softmax over the axes from `axis` on, flattened
    axis = node.attr("axis", 1 if old else -1) % rank
    trailing = int(np.prod(ir.shapes[node.inputs[0]][2:]))
    if axis != 1 or (old and trailing != 1) or (axis == 1 and rank > 2 and old):
        raise ir.refuse(node, f"it normalises over axis {node.attr('axis')} of a rank-{rank} "
                              f"tensor", "cnnrun's softmax runs over the channel axis (dim=1).")
    return [{"type": "softmax" if node.op == "Softmax" else "log_softmax", "_node": node.name}]


def prelu(ir: IR, node: Node) -> list[dict]:
    slope = ir.const(node, 1, "slope")
    shape = ir.sample_shape(node.inputs[0])
    if ir.opset < 7 and slope.ndim == 1 and slope.size == shape[0]:
        slope = slope.reshape(-1, *[1] * (len(shape) - 1))  # opset 6: a 1-D slope is per channel
    per = _per_channel(slope, shape)
    if per is None:
        raise ir.refuse(node, f"a slope of shape {slope.shape} is not one per channel")
    spec = {"type": "prelu", "_node": node.name, "_weights": {"weight": per.copy()}}
    return [{**spec, "channelwise": True} if per.size > 1 else spec]


def clip(ir: IR, node: Node) -> list[dict]:
    if ir.opset < 11:
        lo, hi = node.attr("min", -np.inf), node.attr("max", np.inf)
    else:
        lo, hi = (ir.const(node, i, what, optional=True) for i, what in ((1, "min"), (2, "max")))
    lo = -np.inf if lo is None else float(np.asarray(lo).reshape(-1)[0])
    hi = np.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])
    if lo == 0.0 and hi == np.inf:
        return [{"type": "relu", "_node": node.name}]
    big = float(np.finfo(np.float32).max)  # configs hold no infinity; float32's largest is one
    return [{"type": "clip", "min_val": max(lo, -big), "max_val": min(hi, big),
             "_node": node.name}]


def channelwise(ir: IR, node: Node) -> list[dict]:
    """Mul or Add by a constant: Caffe's Scale/Bias, an affine layer (patterns may fold it)."""
    data = ir.data_inputs(node)
    if len(data) != 1:
        raise ir.refuse(node, "it multiplies two data tensors")
    c = ir.consts[next(t for t in node.inputs if t != data[0])]
    shape = ir.sample_shape(data[0])
    per = _per_channel(c, shape)
    if per is None:
        raise ir.refuse(node, f"a constant of shape {c.shape} is not one value per channel of "
                              f"{shape}", "cnnrun folds per-channel Scale/Bias only.")
    channels = shape[0]
    values = np.broadcast_to(per, (channels,)).astype(c.dtype if c.dtype.kind == "f" else
                                                     np.float32)
    spec = {"type": "affine", "_node": node.name}
    if node.op == "Mul":
        spec.update(bias=False, _weights={"weight": values.copy()})
        if per.size == 1:
            spec["_scalar"] = float(per.reshape(-1)[0])
    else:
        spec.update(bias=True, _weights={"weight": np.ones_like(values), "bias": values.copy()})
    return [spec]


def _per_channel(c: np.ndarray, shape) -> np.ndarray | None:
    """c as one value per channel (or one for all) of a (C, …) sample, else None."""
    if c.ndim > len(shape) + 1 or (c.ndim == len(shape) + 1 and c.shape[0] != 1):
        return None
    body = c.reshape(c.shape[1:]) if c.ndim == len(shape) + 1 else c
    if body.size == 1:
        return body.reshape(1)
    if body.ndim == len(shape) and body.shape[0] == shape[0] and \
            all(s == 1 for s in body.shape[1:]):
        return body.reshape(-1)
    if body.ndim == 1 and len(shape) == 1 and body.shape[0] == shape[0]:
        return body
    return None


def simple(kind: str, **fields):
    def rule(ir: IR, node: Node) -> list[dict]:
        values = {k: (float(node.attr(onnx_name, default)) if onnx_name else default)
                  for k, (onnx_name, default) in fields.items()}
        return [{"type": kind, **values, "_node": node.name}]
    return rule


OPS = {
    "Conv": spatial.conv, "ConvTranspose": spatial.conv_transpose,
    "MaxPool": spatial.pool, "AveragePool": spatial.pool,
    "GlobalAveragePool": spatial.global_pool, "GlobalMaxPool": spatial.global_pool,
    "Pad": spatial.pad, "LRN": spatial.lrn, "BatchNormalization": batch_norm,
    "Gemm": gemm, "MatMul": matmul,
    "Flatten": reshape, "Reshape": reshape, "Squeeze": reshape,
    "Relu": simple("relu"), "Sigmoid": simple("sigmoid"), "Tanh": simple("tanh"),
    "LeakyRelu": simple("leaky_relu", negative_slope=("alpha", 0.01)),
    "PRelu": prelu, "Clip": clip, "Softmax": softmax, "LogSoftmax": softmax,
    "Mul": channelwise, "Add": channelwise,
}


RECURRENT = {"LSTM", "GRU", "RNN", "Loop", "Scan", "If"}


def layers_of(ir: IR, node: Node) -> list[dict]:
    rule = OPS.get(node.op)
    if node.op in RECURRENT:
        raise ir.refuse(node, "a recurrent layer or control flow, not a convolutional network",
                        "cnnrun imports feed-forward CNNs.")
    if rule is None:
        raise ir.refuse(node, "this operator has no cnnrun layer",
                        f"cnnrun imports {', '.join(sorted(OPS.keys() | MERGES))}, the "
                        f"channel shuffle pattern and Dropout/Identity.")
    return rule(ir, node)
