"""Layer names from ONNX node names, and the dotted weight names they give.

PyTorch names a node by its module path, ``/layer1/layer1.0/conv1/Conv``: the last module
(``conv1``) names the layer, and a merge's module (``layer1.0``, sanitised ``layer1_0``) names
its container, so an imported ResNet's weights read ``layer1_0.conv1.weight``. Names are made
unique within each namespace the engine uses (a residual's body shares the residual's).
"""

from __future__ import annotations

import re

import numpy as np

from ..registry import LAYERS
from .tree import map_lists

PRIVATE = ("_node", "_weights", "_scalar", "_global", "_suffix")


def base_name(spec: dict) -> str:
    parts = [p for p in str(spec.get("_node", "")).split("/") if p]
    base = parts[-2] if len(parts) >= 2 else (parts[-1] if parts else spec["type"])
    base = re.sub(r"[^0-9A-Za-z_]+", "_", base).strip("_")
    if not base or base[0].isdigit():
        base = f"{spec['type']}_{base}" if base else spec["type"]
    return f"{base}_{spec['_suffix']}" if spec.get("_suffix") else base


def _unique(base: str, taken: set[str]) -> str:
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    taken.add(name)
    return name


def name_all(layers: list[dict], taken: set[str] | None = None) -> list[dict]:
    taken = set() if taken is None else taken
    out = []
    for spec in layers:
        spec = {"type": spec["type"], "name": _unique(base_name(spec), taken),
                **{k: v for k, v in spec.items() if k != "type"}}
        if spec["type"] == "residual":
            spec["body"] = name_all(spec["body"], {"shortcut", "after"})
            spec["shortcut"] = name_all(spec["shortcut"])
            spec["after"] = name_all(spec["after"])
        elif spec["type"] == "dense":
            spec["body"] = name_all(spec["body"])
        elif spec["type"] == "concat":
            spec["branches"] = [name_all(b) for b in spec["branches"]]
        out.append(spec)
    return out


def weights_of(layers: list[dict], prefix: str = "") -> dict:
    """{dotted name: array} as the engine names a state built from these layers."""
    out = {}
    for spec in layers:
        at = f"{prefix}{spec['name']}"
        if spec["type"] == "residual":
            out.update(weights_of(spec["body"], at + "."))
            out.update(weights_of(spec["shortcut"], at + ".shortcut."))
            out.update(weights_of(spec["after"], at + ".after."))
        elif spec["type"] == "dense":
            out.update(weights_of(spec["body"], at + "."))
        elif spec["type"] == "concat":
            for i, branch in enumerate(spec["branches"]):
                out.update(weights_of(branch, f"{at}.{i}."))
        for key, arr in spec.get("_weights", {}).items():
            out[f"{at}.{key}"] = arr
    return out


def public(layers: list[dict]) -> list[dict]:
    """The config's layers: private keys dropped, empty shortcut/after lists left out."""
    out = []
    for spec in layers:
        spec = map_lists(_short({k: v for k, v in spec.items() if k not in PRIVATE}), public)
        for key in ("shortcut", "after"):
            if key in spec and not spec[key]:
                del spec[key]
        out.append(spec)
    return out


def _short(spec: dict) -> dict:
    """Fields at their defaults left out, and float32 attributes at their shortest (1e-05, not
    9.999999747378752e-06), so the config reads like one written by hand."""
    fields = LAYERS.get(spec["type"]).model_fields
    out = {}
    for key, value in spec.items():
        if isinstance(value, float) and np.isfinite(value):
            value = float(str(np.float32(value)))
        field = fields.get(key)
        if key in ("type", "name") or field is None or field.is_required() or \
                value != field.default:
            out[key] = value
    return out
