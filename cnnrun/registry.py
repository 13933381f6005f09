"""A small name → class registry (in the manner of fvcore's), one per declared kind: layers,
optimizers, schedules, losses.

A duplicate name is an error naming the registry; an unknown name lists
what exists, so a typo in a config gets a useful answer. ``union()`` is the
discriminated union of the registered config classes on their ``type`` tag:
the schema is built from the registry, so it cannot forget a type.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Union

from pydantic import BaseModel, ConfigDict, Field


class Declared(BaseModel):
    """Base of a declared kind's config class: unknown keys are errors, no number is NaN or
    infinite (``lr: .inf`` would pass every bound), and the validator is built on first use
    (``defer_build``), not at import, which keeps ``cnnrun --help`` fast."""

    model_config = ConfigDict(extra="forbid", defer_build=True, allow_inf_nan=False)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, type] = {}

    def register(self, name: str):
        def decorate(obj):
            if name in self._items:
                raise KeyError(f"{self.kind} registry: {name!r} is registered twice")
            self._items[name] = obj
            return obj
        return decorate

    def get(self, name: str):
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"unknown {self.kind} {name!r}{hint}; known: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def union(self):
        """The registered classes as one union, discriminated on ``type``, in the order they
        were declared (the JSON schema and error messages list them so)."""
        return Annotated[Union[tuple(self._items.values())], Field(discriminator="type")]


LAYERS = Registry("layer type")
