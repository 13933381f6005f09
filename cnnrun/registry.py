"""A small name → class registry (in the manner of fvcore's).

A duplicate name is an error naming the registry; an unknown name lists
what exists, so a typo in a config gets a useful answer.
"""

from __future__ import annotations

import difflib


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


LAYERS = Registry("layer type")
