"""The registries described for people: ``cnnrun layers [--kind optimizers|schedules|losses]``."""

from __future__ import annotations

import inspect

from pydantic_core import PydanticUndefined

from ..layers import LAYERS

HIDDEN = {"type", "name", "trainable", "weights"}


def registries() -> dict:
    """Every declared kind's registry, by the name ``cnnrun layers --kind`` takes."""
    from ..engine.losses import LOSSES
    from ..optim import OPTIMIZERS, SCHEDULES
    return {"layers": LAYERS, "optimizers": OPTIMIZERS, "schedules": SCHEDULES, "losses": LOSSES}


def describe_kind(kind: str = "layers") -> list[dict]:
    """Each registered type of a kind: its fields with their defaults, and its summary line."""
    from ..errors import UserError
    found = registries()
    if kind not in found:
        raise UserError(f"--kind {kind}: expected one of {', '.join(found)}.")
    rows = []
    for name, cls in found[kind].items():
        fields = []
        for fname, f in cls.model_fields.items():
            if fname in HIDDEN:
                continue
            default = "required" if f.default is PydanticUndefined else repr(f.default)
            fields.append(f"{fname} ({default})")
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        rows.append({"type": name, "fields": fields, "doc": doc})
    return rows
