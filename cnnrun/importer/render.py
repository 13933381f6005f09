"""The imported config as YAML people read: leaf layers on one line each, as in configs/,
containers as blocks, and a header that says where it came from and what to change."""

from __future__ import annotations

from pathlib import Path

import yaml


def _flow(value) -> str:
    """One value in flow style on one line (wrapped in a list so a scalar has no '...')."""
    return yaml.safe_dump([value], default_flow_style=True, width=10 ** 6,
                          sort_keys=False).strip()[1:-1]


def _layers(layers: list[dict], indent: int) -> list[str]:
    pad, lines = " " * indent, []
    for spec in layers:
        nested = {k: v for k, v in spec.items() if k in ("body", "shortcut", "after", "branches")}
        if not nested:
            lines.append(f"{pad}- {_flow(spec)}")
            continue
        head = [f"{k}: {_flow(v)}" for k, v in spec.items() if k not in nested]
        lines.append(f"{pad}- {head[0]}")
        lines += [f"{pad}  {h}" for h in head[1:]]
        for key, value in nested.items():
            if key == "branches":
                lines.append(f"{pad}  branches:")
                for branch in value:
                    if branch:
                        lines.append(f"{pad}    -")
                        lines += _layers(branch, indent + 6)
                    else:
                        lines.append(f"{pad}    - []  # the identity")
            else:
                lines.append(f"{pad}  {key}:" if value else f"{pad}  {key}: []")
                lines += _layers(value, indent + 4)
    return lines


def config_text(imp, name: str, source: Path) -> str:
    classes = imp.output_shape[0] if len(imp.output_shape) == 1 else None
    data = {"dataset": "synthetic",
            "synthetic": {"shape": list(imp.input_shape),
                          **({"num_classes": classes} if classes else {})}}
    if imp.normalize:  # recorded by cnnrun export in the file's metadata_props
        data["preprocess"] = {"normalize": imp.normalize}
    header = [
        f"# Imported by `cnnrun import` from {source.name} ({imp.producer}, opset {imp.opset}, "
        f"{imp.nodes} ONNX nodes).",
        f"# Weights: {name}.safetensors (cnnrun eval/predict it, or fine-tune with",
        f"#   cnnrun train {name}.yaml --init-weights {name}.safetensors).",
        "# data: synthetic images stand in for the data the network was trained on; point it",
        "#   at yours (dataset: image_folder, root: ...)" + (
            "; preprocess.normalize is the one the file records." if imp.normalize else
            " and set preprocess.normalize as the\n#   original's training did (this file "
            "does not record it)."),
    ]
    body = [f"name: {_flow(name)}", "model:", f"  input_shape: {_flow(list(imp.input_shape))}",
            "  layers:", *_layers(imp.layers, 4), f"data: {_flow(data)}"]
    return "\n".join(header + body) + "\n"
