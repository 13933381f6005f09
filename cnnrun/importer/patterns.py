"""Multi-node patterns, before and after the operators become layers.

Before (on nodes): ``Reshape → Transpose → Reshape`` that regroups channels is ShuffleNet's
channel shuffle, and ``Concat(x0, …, f_k)`` whose first inputs another ``Concat`` already
joined reads that one instead, so torchvision's DenseNet (each layer concatenating every
earlier map) becomes the nested ``concat(x, body(x))`` a ``dense`` layer is.

After (on each list of layers, where a layer feeds only the next): a per-channel scale or
shift (an ``affine`` from ``Mul``/``Add``) folds into the batch norm, convolution, linear layer
or affine before it, or turns an exact average pool into LeNet's ``subsample2d``; a scalar
``Mul`` around ``Tanh``/``Sigmoid`` is ``scaled_tanh``'s amplitude and slope; a pool over the
whole map followed by a flatten is a global pool; activations right after a residual sum are
its ``after`` layers.
"""

from __future__ import annotations

import numpy as np

from .ir import IR, Node
from .tree import map_lists

ACTIVATIONS = {"relu", "clip", "leaky_relu", "sigmoid", "tanh", "scaled_tanh"}


def channel_shuffles(ir: IR) -> None:
    consumers, out = ir.consumers(), []
    skip: set[str] = set()
    for node in ir.nodes:
        if node.output in skip:
            continue
        found = _shuffle_at(ir, node, consumers)
        if found:
            groups, last = found
            out.append(Node("layers", node.name, (node.inputs[0],), last.output,
                            layers=({"type": "channel_shuffle", "groups": groups,
                                     "_node": node.name},)))
            skip.update({consumers[node.output][0].output, last.output})
        else:
            out.append(node)
    ir.nodes = out


def _shuffle_at(ir, node, consumers):
    if node.op != "Reshape" or len(consumers.get(node.output, [])) != 1:
        return None
    t = consumers[node.output][0]
    if t.op != "Transpose" or len(consumers.get(t.output, [])) != 1:
        return None
    last = consumers[t.output][0]
    x, split = ir.shapes[node.inputs[0]], ir.shapes[node.output]
    perm = list(t.attr("perm", []))
    if last.op != "Reshape" or ir.shapes[last.output] != x or len(split) < 3 or \
            perm[:3] != [0, 2, 1] or perm[3:] != list(range(3, len(split))) or \
            split[0] != x[0] or split[1] * split[2] != x[1]:
        return None
    return int(split[1]), last


def dense_concats(ir: IR) -> None:
    joined: dict[tuple, str] = {}
    out = []
    for node in ir.nodes:
        if node.op == "Concat" and len(ir.data_inputs(node)) == len(node.inputs):
            full = tuple(node.inputs)
            for j in range(len(full) - 1, 1, -1):
                if full[:j] in joined:
                    node = Node(node.op, node.name, (joined[full[:j]], *full[j:]), node.output,
                                node.attrs)
                    break
            joined.setdefault(full, node.output)
        out.append(node)
    ir.nodes = out


def tidy(layers: list[dict]) -> list[dict]:
    """Fold neighbours in one list of layers (containers' own lists are tidied first)."""
    out: list[dict] = []
    for spec in _squashings(layers):
        spec = _tidy_children(spec)
        if out and _fold(out, spec):
            continue
        out.append(spec)
    return out


def _squashings(layers: list[dict]) -> list[dict]:
    """Mul(s) → Tanh → Mul(A) is A·tanh(s·x), and Mul(s) → Sigmoid a sigmoid of slope s.
    Found before scales fold, or the slope would vanish into the convolution before it."""
    out, i = [], 0
    while i < len(layers):
        spec, nxt = layers[i], layers[i + 1] if i + 1 < len(layers) else {}
        if "_scalar" in spec and nxt.get("type") in ("tanh", "sigmoid"):
            after = layers[i + 2] if i + 2 < len(layers) else {}
            if nxt["type"] == "sigmoid":
                out.append({"type": "sigmoid", "slope": spec["_scalar"], "_node": nxt["_node"]})
                i += 2
                continue
            amplitude = after.get("_scalar", 1.0)
            out.append({"type": "scaled_tanh", "amplitude": amplitude,
                        "slope": spec["_scalar"], "_node": nxt["_node"]})
            i += 3 if "_scalar" in after else 2
            continue
        out.append(spec)
        i += 1
    return out


def _tidy_children(spec):
    return map_lists(spec, tidy)


def _fold(out: list[dict], spec: dict) -> bool:
    """Merge ``spec`` into ``out[-1]`` (or the last two) when one layer computes both."""
    prev = out[-1]
    if spec["type"] == "affine":
        return _fold_affine(out, prev, spec)
    if spec["type"] == "flatten" and prev.get("_global"):
        out[-1] = {"type": "global_avgpool" if prev["type"] == "avgpool2d" else
                   "global_maxpool", "_node": prev["_node"]}
        return True
    if spec["type"] in ACTIVATIONS and prev["type"] == "residual" and \
            not spec.get("_weights") and all(a["type"] in ACTIVATIONS for a in prev["after"]):
        out[-1] = {**prev, "after": [*prev["after"], spec]}
        return True
    return False


def _fold_affine(out, prev, spec) -> bool:
    w, b = spec["_weights"]["weight"], spec["_weights"].get("bias")
    kind = prev["type"]
    p = prev.get("_weights")
    if kind in ("conv2d", "conv1d", "linear") and not prev.get("connections"):
        p = prev["_weights"] = dict(p)
        p["weight"] = p["weight"] * w.reshape(-1, *[1] * (p["weight"].ndim - 1))
        bias = p.get("bias", np.zeros_like(w)) * w + (b if b is not None else 0)
        if "bias" in p or b is not None:
            p["bias"], prev["bias"] = bias.astype(w.dtype), True
        return True
    if kind in ("batchnorm2d", "batchnorm1d", "affine", "subsample2d"):
        p = prev["_weights"] = dict(p)
        p["weight"] = p["weight"] * w
        if kind == "affine" and not prev.get("bias", True):
            p["bias"], prev["bias"] = (b if b is not None else np.zeros_like(w)), b is not None
        else:
            p["bias"] = p["bias"] * w + (b if b is not None else 0)
        return True
    if kind == "avgpool2d" and b is None and _exact_blocks(prev):
        n = prev["kernel_size"]
        out[-1] = {"type": "subsample2d", "kernel_size": n, "_node": prev["_node"],
                   "_weights": {"weight": w / (n * n), "bias": np.zeros_like(w)}}
        return True
    return False


def _exact_blocks(pool: dict) -> bool:
    k = pool["kernel_size"]
    return isinstance(k, int) and pool.get("stride") == k and not pool.get("padding") and \
        not pool.get("ceil_mode") and not pool.get("_global")
