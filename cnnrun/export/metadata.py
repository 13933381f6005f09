"""What an exported model expects of its input, written into the ONNX file's
``metadata_props`` so that whoever runs it elsewhere can prepare images as training did.

Two keys, each a JSON string:

- ``preprocess``: ``{"layout": "NCHW", "input_shape": [C, H, W], "steps": [...]}``, the steps
  in the order cnnrun applies them to 8-bit pixels: ``{"scale": s}`` (multiply),
  ``{"background": [low, high]}`` (map 0..1 to low..high), ``{"normalize": {"mean": [...],
  "std": [...]}}`` (per channel), ``{"pad": p}`` (each side, with the value a 0 pixel becomes),
  ``{"resize": [H, W]}``;
- ``classes``: the class names, output index order.

``cnnrun import`` reads both back: the normalisation into the imported config, the classes
into its checkpoint.
"""

from __future__ import annotations

import json


def preprocess_steps(pre, stats) -> list[dict]:
    steps: list[dict] = [{"scale": float(pre.scale)}]
    if pre.background is not None:
        steps.append({"background": [float(v) for v in pre.background]})
    if stats is not None:
        steps.append({"normalize": {"mean": [float(v) for v in stats[0]],
                                    "std": [float(v) for v in stats[1]]}})
    if pre.pad:
        steps.append({"pad": int(pre.pad)})
    if pre.resize is not None:
        steps.append({"resize": [int(v) for v in pre.resize]})
    return steps


def metadata_props(input_shape, pre, stats, classes) -> dict[str, str]:
    return {"preprocess": json.dumps({"layout": "NCHW", "input_shape": list(input_shape),
                                      "steps": preprocess_steps(pre, stats)}),
            "classes": json.dumps(list(classes))}


def read_props(proto) -> tuple[dict | None, list[str] | None]:
    """(normalisation {"mean", "std"} or None, class names or None) of an ONNX file; values
    that are not what cnnrun writes are ignored, not trusted."""
    props = {p.key: p.value for p in proto.metadata_props}
    normalize, classes = None, None
    try:
        steps = json.loads(props.get("preprocess", "{}")).get("steps", [])
        found = [s["normalize"] for s in steps if isinstance(s, dict) and "normalize" in s]
        if found and all(isinstance(v, (int, float)) for k in ("mean", "std")
                         for v in found[0][k]):
            normalize = {"mean": list(found[0]["mean"]), "std": list(found[0]["std"])}
    except (ValueError, AttributeError, KeyError, TypeError):
        normalize = None
    try:
        names = json.loads(props.get("classes", "null"))
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            classes = names
    except ValueError:
        classes = None
    return normalize, classes
