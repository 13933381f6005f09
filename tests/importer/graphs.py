"""Small ONNX graphs written with onnx.helper, for the import's pattern and refusal tests."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def rand(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, shape).astype(np.float32)


def node(op, inputs, output, name=None, **attrs):
    return helper.make_node(op, inputs, [output], name=name or f"/{output}/{op}", **attrs)


def model(nodes, weights=None, shape=(1, 3, 8, 8), opset=13, batch="N"):
    """A graph from input 'x' to output 'y'; ``batch`` None keeps shape[0] fixed."""
    dims = [batch, *shape[1:]] if batch else list(shape)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (weights or {}).items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(proto, path):
    path.write_bytes(proto.SerializeToString())
    return path
