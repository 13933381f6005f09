"""The layer lists inside a config spec, walked once here: a container holds its children in
``body``, ``shortcut``, ``after`` or ``layers`` (a list each) or in ``branches`` (a list of
lists). The passes that rewrite every list (``patterns.tidy``, ``naming.public``) and the
count of layers read them through these two functions."""

from __future__ import annotations

LISTS = ("body", "shortcut", "after", "layers")


def lists(spec: dict):
    """Each list of layers a spec holds, in order."""
    for key in LISTS:
        if key in spec:
            yield spec[key]
    yield from spec.get("branches", [])


def map_lists(spec: dict, fn) -> dict:
    """A copy of ``spec`` with ``fn`` applied to each list of layers it holds."""
    spec = dict(spec)
    for key in LISTS:
        if key in spec:
            spec[key] = fn(spec[key])
    if "branches" in spec:
        spec["branches"] = [fn(b) for b in spec["branches"]]
    return spec


def count(layers: list[dict]) -> int:
    """Layers in a list, containers and everything inside them."""
    return sum(1 + sum(count(inner) for inner in lists(spec)) for spec in layers)
