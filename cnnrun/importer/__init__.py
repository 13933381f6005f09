"""Coming into cnnrun: an ONNX graph read back as a config and its weights (``cnnrun import``).

The import runs in four passes, each a module, so each can be read and tested alone:

- ``reader``: the file, read safely (size bound, external weights only beside it), and its
  one float input, whose per-sample shape becomes ``input_shape``;
- ``fold``: every tensor that does not depend on the input (weights, ``Constant``,
  ``Shape`` chains) evaluated once, leaving the data nodes and the shape of each tensor;
- ``patterns`` and ``ops``: data nodes become registry layers, first the multi-node patterns
  (MatMul + Add, per-channel Scale folded into its batch norm or convolution, the
  Reshape/Transpose/Reshape channel shuffle), then one rule per operator (``ops.OPS``);
- ``series_parallel``: the DAG cut into containers from input to output: an ``Add`` merge is a
  ``residual``, a ``Concat`` merge a ``concat`` or, when the input is itself concatenated, a
  ``dense`` layer.

Nothing here knows the config loader or the trainer: the result is a plain config tree and the
weights under their dotted names, which ``tools.onnx_import`` validates, saves and checks.
"""
