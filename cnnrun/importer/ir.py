"""The graph the import works on: data nodes in topological order, constants already folded.

A tensor is either a constant (``consts``) or data that depends on the model's input
(``shapes`` gives its full shape, batch first). Passes replace nodes; they never edit one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError


class ImportRefused(UserError):
    """The graph uses something cnnrun has no layer for (exit 2, naming the node)."""


@dataclass(frozen=True)
class Node:
    op: str
    name: str
    inputs: tuple[str, ...]
    output: str
    attrs: dict = field(default_factory=dict, hash=False, compare=False)
    layers: tuple = ()  # for op "layers": the registry layers this node became

    def attr(self, key, default=None):
        return self.attrs.get(key, default)


@dataclass
class IR:
    source: str  # the file, for messages
    opset: int
    input: str
    output: str
    batch: int
    nodes: list[Node]
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]

    def sample_shape(self, tensor: str) -> tuple[int, ...]:
        """A data tensor's shape without the batch axis."""
        return tuple(self.shapes[tensor][1:])

    def const(self, node: Node, i: int, what: str, optional: bool = False):
        """Input ``i`` of ``node`` as a constant array (None when absent and optional)."""
        if i >= len(node.inputs) or node.inputs[i] == "":
            if optional:
                return None
            raise self.refuse(node, f"it has no {what}")
        name = node.inputs[i]
        if name not in self.consts:
            raise self.refuse(node, f"its {what} ('{name}') is computed from the input at run "
                                    f"time; cnnrun needs it to be a constant (a weight)")
        return self.consts[name]

    def data_inputs(self, node: Node) -> list[str]:
        return [t for t in node.inputs if t and t not in self.consts]

    def consumers(self) -> dict[str, list[Node]]:
        out: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in self.data_inputs(n):
                out.setdefault(t, []).append(n)
        return out

    def producer(self) -> dict[str, Node]:
        return {n.output: n for n in self.nodes}

    def refuse(self, node: Node, why: str, need: str = "") -> ImportRefused:
        label = f"node '{node.name}' ({node.op})" if node.name else f"a {node.op} node"
        tail = f" {need}" if need else (" Change the model before exporting it, or ask for "
                                        "the operator in cnnrun's issues.")
        return ImportRefused(f"{self.source}: {label}: {why}.{tail}")
