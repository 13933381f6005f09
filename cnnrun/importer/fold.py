"""Constant folding and shapes: the ONNX graph reduced to the nodes that touch the input.

Exporters build weights and shapes at run time: ``Constant``, ``Shape → Gather → Unsqueeze →
Concat → Reshape`` for a flatten, ``Transpose`` of a weight. Every node whose inputs are all
known is evaluated once with onnx's reference evaluator, at the model's own opset, and
``Shape`` of a data tensor is its inferred shape, so these chains become constants before any
operator is mapped. ``Identity`` and ``Dropout`` (inference) are aliases. What is left are data
nodes, each with the full shape of its output (batch first; a graph with a fixed batch of 1
keeps it here, and the per-sample shape after it is what the config gets).
"""

from __future__ import annotations

import numpy as np

from .ir import IR, ImportRefused, Node
from .reader import the_input, the_output

ALIASES = {"Identity", "Dropout"}
FLOATS = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
MOST_FOLDED = 1 << 28  # elements a folded constant may have (1 GiB of float32)


def fold(proto, source: str, input_shape=None) -> IR:
    from onnx import numpy_helper  # noqa: PLC0415
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    x, batch, sample = the_input(proto, source, input_shape)
    shapes = infer_shapes(proto, x, (batch, *sample))
    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    alias: dict[str, str] = {}
    data, nodes = {x}, []
    for proto_node in proto.graph.node:  # ONNX files list nodes in topological order
        node = _node(proto_node, alias)
        if proto_node.domain not in ("", "ai.onnx"):
            raise ImportRefused(f"{source}: node '{node.name}' is {proto_node.domain}."
                                f"{node.op}, a vendor operator; cnnrun reads the standard "
                                f"ONNX operators only.")
        extra = [o for o in proto_node.output[1:] if o and o in used]
        if not any(i in data for i in node.inputs if i):
            for name, value in zip(proto_node.output, _evaluate(proto_node, node, consts,
                                                                proto, source)):
                consts[name] = value
        elif extra:
            raise _refuse(source, node, "its mask output is used" if node.op == "Dropout" else
                          f"its extra outputs {extra} are used (training statistics, indices "
                          f"or a split); cnnrun layers give one")
        elif node.op == "Shape":
            consts[node.output] = _shape_of(node, _known(shapes, node.inputs[0], node, source))
        elif node.op in ALIASES:
            alias[node.output] = node.inputs[0]
        else:
            if node.output not in shapes:  # inference stopped at a folded Shape chain
                shapes[node.output] = _shape_by_running(proto_node, node, shapes, consts,
                                                        proto, source)
            nodes.append(node)
            data.add(node.output)
    out = the_output(proto, source)
    out = alias.get(out, out)
    if out not in data:
        raise ImportRefused(f"{source}: the output '{out}' does not depend on the input.")
    nodes = [n for n in nodes if n.output in _needed(nodes, out)]
    return IR(source, opset, x, out, batch, nodes, consts, shapes)


def _node(proto_node, alias) -> Node:
    from onnx.helper import get_attribute_value  # noqa: PLC0415
    attrs = {}
    for a in proto_node.attribute:
        v = get_attribute_value(a)
        attrs[a.name] = v.decode() if isinstance(v, bytes) else v
    inputs = tuple(alias.get(i, i) for i in proto_node.input)
    return Node(proto_node.op_type, proto_node.name or proto_node.output[0], inputs,
                proto_node.output[0], attrs)


def _needed(nodes, out) -> set[str]:
    """Outputs on some path to the graph's output (a dead branch is dropped, not refused)."""
    need, by_output = {out}, {n.output: n for n in nodes}
    for n in reversed(nodes):
        if n.output in need:
            need.update(i for i in n.inputs if i in by_output)
    return need


def _refuse(source, node, why):
    return ImportRefused(f"{source}: node '{node.name}' ({node.op}): {why}.")


def _known(shapes, tensor, node, source):
    shape = shapes.get(tensor)
    if shape is None:
        raise _refuse(source, node, f"the shape of '{tensor}' cannot be inferred; pass "
                                    f"--input-shape, or simplify the model (onnxsim)")
    return shape


def _shape_of(node, shape) -> np.ndarray:
    start, end = node.attr("start", 0), node.attr("end", None)
    return np.array(shape[start:end], dtype=np.int64)


def infer_shapes(proto, x: str, full_shape) -> dict[str, tuple[int, ...]]:
    """Static shapes of every tensor, the input fixed to ``full_shape`` (batch first)."""
    import onnx  # noqa: PLC0415
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    # Data propagation reads small integer constants (Pad's pads, Reshape's shape); the
    # float weights only need their shapes, and copying 500 MB into the C++ pass costs seconds.
    del fixed.graph.initializer[:]
    known = {i.name for i in fixed.graph.input}
    for t in proto.graph.initializer:
        if t.data_type in FLOATS and t.name not in known:
            fixed.graph.input.append(onnx.helper.make_tensor_value_info(
                t.name, t.data_type, list(t.dims)))
        elif t.data_type not in FLOATS:
            fixed.graph.initializer.append(t)
    for i in fixed.graph.input:
        if i.name == x:
            dims = i.type.tensor_type.shape.dim
            del dims[:]
            for size in full_shape:
                dims.add().dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - a graph inference cannot follow; shapes stay unknown
        inferred = fixed
    shapes = {}
    g = inferred.graph
    for v in [*g.input, *g.value_info, *g.output]:
        dims = v.type.tensor_type.shape.dim
        if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[v.name] = tuple(int(d.dim_value) for d in dims)
    shapes[x] = tuple(full_shape)
    return shapes


def _shape_by_running(proto_node, node, shapes, consts, proto, source) -> tuple[int, ...]:
    """The output shape of a data node that shape inference could not follow, from running
    it once on zeros of its input's shape (the constants it reads are folded by now)."""
    feeds = dict(consts)
    for i in node.inputs:
        if i and i not in consts:
            shape = _known(shapes, i, node, source)
            if np.prod(shape, dtype=np.float64) > MOST_FOLDED:
                raise _refuse(source, node, f"its input {shape} is too large to follow")
            feeds[i] = np.zeros(shape, np.float32)
    return tuple(int(d) for d in _evaluate(proto_node, node, feeds, proto, source)[0].shape)


def _evaluate(proto_node, node: Node, consts, proto, source) -> list[np.ndarray]:
    """One node on constant inputs, by onnx's reference evaluator at the model's opset."""
    from onnx import helper  # noqa: PLC0415
    from onnx.reference import ReferenceEvaluator  # noqa: PLC0415
    names = [i for i in node.inputs if i]
    _check_size(node, [consts[i] for i in names], source)
    renamed = helper.make_node(node.op, list(node.inputs), list(proto_node.output),
                               name=node.name)
    renamed.attribute.extend(proto_node.attribute)
    feeds = {i: consts[i] for i in names}
    graph = helper.make_graph(
        [renamed], "fold",
        [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for i, v in feeds.items()],
        [helper.make_empty_tensor_value_info(o) for o in proto_node.output if o])
    model = helper.make_model(graph, opset_imports=list(proto.opset_import))
    try:
        values = ReferenceEvaluator(model).run(None, feeds)
    except Exception as e:  # noqa: BLE001 - the reference evaluator raises many kinds
        raise _refuse(source, node, f"folding this constant failed ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''})") from e
    return [np.asarray(v) for v in values]


def _check_size(node: Node, inputs, source) -> None:
    """Refuse a constant that would be huge before it is made (ConstantOfShape of 10¹²)."""
    size = None
    if node.op in ("ConstantOfShape", "Expand") and inputs:
        size = float(np.prod(np.abs(inputs[-1].astype(np.float64))))
    elif node.op == "Tile" and len(inputs) == 2:
        size = float(inputs[0].size) * float(np.prod(np.abs(inputs[1].astype(np.float64))))
    elif node.op == "Range" and len(inputs) == 3:
        start, limit, delta = (float(np.asarray(v).reshape(-1)[0]) for v in inputs)
        size = abs((limit - start) / delta) if delta else float("inf")
    if size is not None and size > MOST_FOLDED:
        raise _refuse(source, node, f"it would make a constant of {size:.3g} elements")
