"""An ONNX file to a config's layers and its weights: the passes in order (see __init__)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..export.metadata import read_props
from ..layers import ShapeError
from ..registry import LAYERS
from . import patterns
from .fold import fold
from .ir import IR, Node
from .naming import name_all, public, weights_of
from .ops import layers_of
from .reader import read_model
from .series_parallel import decompose, is_merge


@dataclass
class Imported:
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: list[dict]  # the config's model.layers
    weights: dict  # dotted name -> array, PyTorch layouts
    opset: int
    producer: str
    nodes: int
    input_name: str
    batch: int | None  # the graph's fixed batch size, None when symbolic
    normalize: dict | None = None  # from cnnrun's own metadata_props, when present
    classes: list[str] | None = None


def convert(path: Path, input_shape=None) -> Imported:
    proto = read_model(path)
    ir = fold(proto, str(path), input_shape)
    patterns.channel_shuffles(ir)
    patterns.dense_concats(ir)
    ir.nodes = [_mapped(ir, n) for n in ir.nodes]
    layers = name_all(patterns.tidy(decompose(ir)))
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    normalize, classes = read_props(proto)
    return Imported(ir.sample_shape(ir.input), ir.sample_shape(ir.output), public(layers),
                    weights_of(layers), ir.opset, producer or "unknown", len(proto.graph.node),
                    ir.input, _fixed_batch(proto, ir.input), normalize, classes)


def _fixed_batch(proto, name: str) -> int | None:
    dim = next(i for i in proto.graph.input if i.name == name).type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _mapped(ir: IR, node: Node) -> Node:
    """A node as the layers it becomes (merges stay nodes), checked against ONNX's shape."""
    if node.op == "layers" or is_merge(ir, node):
        return node
    data = ir.data_inputs(node)
    specs = [] if node.op == "Concat" else layers_of(ir, node)  # a one-input Concat: identity
    shape = ir.sample_shape(data[0])
    for spec in specs:
        shape = _apply(ir, node, spec, shape)
    if shape != ir.sample_shape(node.output):
        raise ir.refuse(node, f"its cnnrun form gives {shape} where ONNX gives "
                              f"{ir.sample_shape(node.output)}")
    return Node("layers", node.name, (data[0],), node.output, layers=tuple(specs))


def _apply(ir: IR, node: Node, spec: dict, shape):
    config = {k: v for k, v in spec.items() if not k.startswith("_")}
    try:
        layer = LAYERS.get(spec["type"]).model_validate(config)
        return tuple(layer.output_shape(shape))
    except (ValidationError, ShapeError) as e:
        first = e.errors()[0]["msg"] if isinstance(e, ValidationError) else str(e)
        raise ir.refuse(node, f"as {spec['type']} {config} it is invalid ({first})") from e
