"""The registry described for people: ``cnnrun layers``."""

from __future__ import annotations

import inspect

from pydantic_core import PydanticUndefined

from .layers import LAYERS

HIDDEN = {"type", "name", "trainable", "weights"}


def describe_layers() -> list[dict]:
    rows = []
    for name, cls in LAYERS.items():
        fields = []
        for fname, f in cls.model_fields.items():
            if fname in HIDDEN:
                continue
            default = "required" if f.default is PydanticUndefined else repr(f.default)
            fields.append(f"{fname} ({default})")
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        rows.append({"type": name, "fields": fields, "doc": doc})
    return rows
