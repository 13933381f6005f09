"""Pydantic's validation errors as ``file:line:col key.path: message`` lines."""

from __future__ import annotations

import difflib
import typing

from pydantic import BaseModel
from typing_extensions import TypeAliasType

from ..layers import LAYERS
from .yamlsource import Loc, format_path


def describe_errors(err, data, locs, source: str) -> str:
    lines, seen = [], set()
    for e in err.errors():
        path, raw = clean_path(e["loc"], data, e["type"]), e["loc"]
        if path in seen:  # one message per place (a union reports once per member)
            continue
        seen.add(path)
        loc = _loc_for(locs, path, source)
        lines.append((loc.line, loc.column,
                      f"{loc} {format_path(path) or '(top level)'}: {message(e, raw)}"))
    lines = [text for *_, text in sorted(lines, key=lambda t: (t[0], t[1]))]
    n = len(lines)
    head = f"{source}: {n} problem{'s' if n > 1 else ''} in this config; fix {'them' if n > 1 else 'it'} and run again:"
    return head + "\n" + "\n".join("  " + ln for ln in lines)


def clean_path(loc, data, kind) -> tuple:
    """Keep the loc parts that index the data; drop union tags such as 'conv2d'."""
    path, node = [], data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif last and kind in ("missing", "extra_forbidden"):
            path.append(part)
    return tuple(path)


def _loc_for(locs, path, source):
    for n in range(len(path), -1, -1):
        if path[:n] in locs:
            return locs[path[:n]]
    return Loc(source)


def message(e: dict, raw_loc) -> str:
    kind, ctx, got = e["type"], e.get("ctx", {}), e.get("input")
    if kind == "greater_than" and isinstance(ctx.get("gt"), int) and isinstance(got, int):
        return f"must be ≥ {ctx['gt'] + 1}, got {got}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": "≥", "less_than": "<",
                "less_than_equal": "≤"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {sign} {bound}, got {got}"
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return _unknown_key(raw_loc)
    if kind == "union_tag_invalid":
        known = ", ".join(LAYERS.names()) if _is_layer_place(raw_loc) else ctx.get("expected_tags")
        close = difflib.get_close_matches(str(ctx.get("tag")), [k.strip(" '") for k in str(known).split(",")], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown type {ctx.get('tag')!r}{hint}; known types: {known}"
    if kind == "union_tag_not_found":
        return "needs a 'type' key saying what it is"
    if kind == "value_error":  # a validator's own sentence; the input may be a whole block
        return str(ctx.get("error", e["msg"]))
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {got!r}"
    return f"{e['msg'][0].lower()}{e['msg'][1:]}, got {got!r}"


def _is_layer_place(loc) -> bool:
    return any(p in ("layers", "body", "shortcut", "branches") for p in loc)


def _unknown_key(raw_loc) -> str:
    """An unknown key; when it is a field of a sibling type of the same union (``momentum``
    under ``type: sdlm``), say whose."""
    key, owner = str(raw_loc[-1]), raw_loc[-2] if len(raw_loc) > 1 else None
    siblings = _members_at(raw_loc[:-2]) if isinstance(owner, str) else []
    if owner in {_tag(m) for m in siblings}:
        belongs = [_tag(m) for m in siblings if key in getattr(m, "model_fields", {})]
        if belongs:
            return f"`{key}` is not a field of `{owner}` (it belongs to {', '.join(belongs)})"
    return f"unknown key{_suggest(raw_loc)}"


def _suggest(raw_loc) -> str:
    fields = _fields_at(raw_loc[:-1])
    close = difflib.get_close_matches(str(raw_loc[-1]), fields, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f"; expected one of: {', '.join(fields)}" if fields else ""


def _members_at(loc) -> list:
    """The models that may sit at a raw pydantic loc (a union's members, tags not taken)."""
    from .schema import RunConfig
    candidates: list = [RunConfig]
    for part in loc:
        nxt = []
        for c in candidates:
            nxt.extend(_step(c, part))
        candidates = nxt or candidates
    return candidates


def _fields_at(loc) -> list[str]:
    """The field names of the model that sits at a raw pydantic loc (tags included)."""
    fields = set()
    for c in _members_at(loc):
        if isinstance(c, type) and issubclass(c, BaseModel):
            fields |= set(c.model_fields)
    return sorted(fields)


def _step(cls, part):
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        if isinstance(part, str) and part in cls.model_fields:
            return _members(cls.model_fields[part].annotation)
        return []
    if isinstance(part, int):
        return [m for c in _members(cls) for m in _members(_item_type(c))]
    return [m for m in _members(cls) if _tag(m) == part]


def _members(ann):
    if isinstance(ann, TypeAliasType):  # the layer union (``layers.AnyLayer``)
        return _members(ann.__value__)
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return _members(typing.get_args(ann)[0])
    if origin is typing.Union:
        return [m for a in typing.get_args(ann) for m in _members(a)]
    return [ann]


def _item_type(ann):
    args = typing.get_args(ann)
    return args[0] if typing.get_origin(ann) in (list, tuple) and args else None


def _tag(cls):
    if isinstance(cls, type) and issubclass(cls, BaseModel) and "type" in cls.model_fields:
        return cls.model_fields["type"].default
    return None
