"""The small node-and-weight builder every layer's ``to_onnx`` writes into.

Layers know only this interface (``op``, ``const``, ``unsupported``), never the
``onnx`` package, so each layer's ONNX form sits beside its forward pass in the
layer's own class while the optional dependency stays in ``export.onnx``.
Tensors are named strings; shapes are NCHW with the batch axis first, as in
every ONNX runtime.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


class ExportError(UserError):
    """A layer ONNX cannot express (exit 2, with the layer's name and why)."""


class Graph:
    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.nodes: list[tuple[str, list[str], str, dict]] = []  # (op, inputs, output, attrs)
        self.weights: dict[str, np.ndarray] = {}
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        """Append one node; returns the name of its single output."""
        out = self.fresh(op_type)
        self.nodes.append((op_type, list(inputs), out, attrs))
        return out

    def const(self, value, hint: str = "const", dtype=None) -> str:
        """A weight or constant tensor (float arrays in the export dtype)."""
        arr = np.asarray(value)
        if dtype is not None:
            arr = arr.astype(dtype)
        elif arr.dtype.kind == "f":
            arr = arr.astype(self.dtype)
        name = self.fresh(hint)
        self.weights[name] = np.ascontiguousarray(arr)
        return name

    def chain(self, children, x: str, p: dict, in_shape) -> str:
        """Children run one after the other, each on its own part of ``p``."""
        for name, child, shape in children:
            x = child.to_onnx(self, x, p.get(name, {}), shape)
        return x

    @staticmethod
    def unsupported(layer, why: str = "") -> ExportError:
        return ExportError(f"{layer.label()}: layer type '{layer.type}' has no ONNX form"
                           f"{'; ' + why if why else ''}. Replace it in the config, or run "
                           f"the model with cnnrun itself.")
