"""``cnnrun export --format onnx``: the model's inference graph, written with the ``onnx``
package (an optional extra; PyTorch is not involved).

Batch norm exports its running statistics and dropout the identity, as in
evaluation. The batch axis is symbolic, so the file takes any batch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .graph import Graph

DEFAULT_OPSET = 17
MIN_OPSET = 13  # Softmax over one axis, Resize with scales as an input


def _onnx():
    try:
        import onnx  # noqa: PLC0415 - optional extra
        return onnx
    except ImportError as e:
        raise UserError("ONNX export needs the onnx package: pip install 'cnnrun[onnx]'.") from e


def build_graph(model, state) -> tuple[Graph, str]:
    """Every layer's ONNX nodes and weights, from the input tensor 'input'."""
    g = Graph(np.float32)
    out = model.root.to_onnx(g, "input", state, model.input_shape)
    return g, out


def to_model_proto(model, state, opset: int = DEFAULT_OPSET, name: str = "cnnrun",
                   metadata: dict[str, str] | None = None):
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset}: cnnrun writes opset {MIN_OPSET} or later.")
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415
    g, out = build_graph(model, state)
    nodes = [helper.make_node(op, inputs, [output], name=output, **attrs)
             for op, inputs, output, attrs in g.nodes]
    if out == "input":  # a model that is the identity still needs one node
        nodes.append(helper.make_node("Identity", ["input"], ["output"]))
    else:
        for node in nodes:  # the graph's result gets the public name 'output'
            node.output[:] = ["output" if o == out else o for o in node.output]
            node.input[:] = ["output" if i == out else i for i in node.input]
    inits = [numpy_helper.from_array(arr, name) for name, arr in g.weights.items()]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *model.input_shape])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                      ["batch", *model.output_shape])
    graph = helper.make_graph(nodes, name, [x], [y], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="cnnrun")
    proto.ir_version = min(proto.ir_version, 8)  # readable by runtimes a few years old
    helper.set_model_props(proto, metadata or {})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, state, path, opset: int = DEFAULT_OPSET, name: str = "cnnrun",
                metadata: dict[str, str] | None = None) -> Path:
    """Write the checked ONNX file; weights over 2 GB go to a side file as ONNX allows.
    ``metadata``: string pairs for the model's ``metadata_props`` (see ``metadata.py``)."""
    onnx = _onnx()
    proto = to_model_proto(model, state, opset, name, metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    big = proto.ByteSize() > 2_000_000_000
    onnx.save_model(proto, tmp, save_as_external_data=big, location=path.name + ".data")
    tmp.replace(path)
    return path
