"""Read a config: YAML (+ ``extends``) → merge ``--set`` overrides → validate once → check shapes.

Every problem is reported at once, each as ``file:line:col path: message``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from pydantic import ValidationError

from ..errors import UserError
from ..layers import ShapeError
from .blocks import expand as expand_blocks
from .errors import describe_errors
from .schema import RunConfig
from .yamlsource import Loc, format_path, parse, read


def load_config(path, overrides: list[str] = ()) -> RunConfig:
    """The validated config, its shapes checked, or a UserError listing every problem."""
    data, locs = load_yaml_tree(Path(path))
    for item in overrides:
        apply_override(data, locs, item)
    data = expand_blocks(data)
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(describe_errors(e, data, locs, str(path))) from e
    check_shapes(cfg, locs, str(path))
    if cfg.name is None:  # the file's name, made a safe run name
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-.") or "run"
        cfg = cfg.model_copy(update={"name": stem[:100]})
    return cfg


def locate(path, overrides: list[str], key: tuple) -> str:
    """``file:line:col`` of a key of a config (or of the nearest key above it), for an error
    found after loading (config.ConfigValueError)."""
    data, locs = load_yaml_tree(Path(path))
    for item in overrides:
        apply_override(data, locs, item)
    return str(_nearest_loc(locs, tuple(key), str(path)))


def load_yaml_tree(path: Path, chain: tuple[Path, ...] = ()):
    """A file merged over the files it ``extends`` (mappings merge, lists replace)."""
    path = path.resolve() if chain else path
    if path.resolve() in [p.resolve() for p in chain]:
        cycle = " → ".join(str(p) for p in (*chain, path))
        raise UserError(f"{path}: 'extends' forms a cycle: {cycle}. Remove one of these links.")
    data, locs = read(path)
    if not isinstance(data, dict):
        raise UserError(f"{Loc(str(path), 1, 1)}: a config must be a mapping with model, data "
                        f"and train sections, got {type(data).__name__}.")
    parent = data.pop("extends", None)
    if "blocks" in data and "model" not in data and not chain:
        raise UserError(f"{path}: a block library (its 'blocks:' define layers), not a config "
                        f"to train or summarise. A config uses it with 'extends: "
                        f"{path.name}' and layers such as '{{use: BLOCK, ...}}' "
                        f"(configs/vgg16.yaml shows how).")
    if parent is None:
        return data, locs
    if not isinstance(parent, str):
        raise UserError(f"{locs[('extends',)]} extends: must be a file path, got {parent!r}.")
    parent_path = (path.parent / parent)
    if not parent_path.exists():
        raise UserError(f"{locs[('extends',)]} extends: no file {parent_path}. Paths are relative "
                        f"to the config that names them.")
    base, base_locs = load_yaml_tree(parent_path, (*chain, path))
    return merge(base, base_locs, data, locs)


def merge(base, base_locs, over, over_locs):
    """``over`` on top of ``base``; each location comes from the file that gave the value."""
    replaced = [p for p, v in _leaves(over, ()) if not isinstance(v, dict)]
    kept = {p: l for p, l in base_locs.items()
            if not any(p[:len(r)] == r for r in replaced)}
    return _merge_data(copy.deepcopy(base), over), {**kept, **over_locs}


def _merge_data(base, over):
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(base.get(key), dict):
            _merge_data(base[key], val)
        else:
            base[key] = copy.deepcopy(val)
    return base


def _leaves(data, path):
    if isinstance(data, dict):
        for k, v in data.items():
            yield path + (k,), v
            yield from _leaves(v, path + (k,)) if isinstance(v, dict) else ()


_TOKEN = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def parse_key_path(text: str) -> tuple:
    parts, pos = [], 0
    for m in _TOKEN.finditer(text):
        if m.start() != pos and text[pos:m.start()] != ".":
            break
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(text) or not parts:
        raise UserError(f"--set {text}: not a key path; write it like train.epochs or "
                        f"model.layers[2].out_channels.")
    return tuple(parts)


def apply_override(data: dict, locs: dict, item: str) -> None:
    """Apply one ``key.path=value`` (the value read as YAML: 3, 5e-4, true, [1, 2])."""
    if "=" not in item:
        raise UserError(f"--set {item}: expected key.path=value, e.g. --set train.epochs=1.")
    key, raw = item.split("=", 1)
    path = parse_key_path(key.strip())
    # the same parser as files: duplicate keys, self-reference and alias bombs refused
    value, _ = parse(raw, f"--set {item}")
    node = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise UserError(f"--set {item}: {format_path(path[:i + 1])} does not exist "
                                f"(the list has {len(node) if isinstance(node, list) else 0} items).")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise UserError(f"--set {item}: {format_path(path[:i])} is not a mapping.")
            node = node.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise UserError(f"--set {item}: {format_path(path)} does not exist.")
    elif not isinstance(node, dict):
        raise UserError(f"--set {item}: {format_path(path[:-1])} is not a mapping.")
    node[last] = value
    for p in [p for p in locs if p[:len(path)] == path]:
        del locs[p]
    locs[path] = Loc("--set")


def check_shapes(cfg: RunConfig, locs: dict, source: str) -> None:
    """Build the shape chain (no weights): a layer that cannot take its input is an error here."""
    from ..engine.model import Model
    try:
        Model(cfg.model.layers, cfg.model.input_shape)
    except ShapeError as e:
        path = ("model",) + tuple(getattr(e, "path", ()))
        loc = _nearest_loc(locs, path, source)
        raise UserError(f"{loc} {format_path(path)}: {e}") from e


def _nearest_loc(locs, path, source):
    for n in range(len(path), -1, -1):
        if path[:n] in locs:
            return locs[path[:n]]
    return Loc(source)
