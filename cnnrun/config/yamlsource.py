"""YAML with locations: every value's (file, line, column), for errors that point at it.

Only the safe loader is used (libyaml's ``CSafeLoader`` when PyYAML has it, which is
several times faster, else ``SafeLoader``). The text is parsed once into a node tree,
which gives the marks; values are built from the same tree with the safe constructor,
so the data is exactly what ``yaml.safe_load`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import UserError

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Path_ = tuple  # a key path: ('model', 'layers', 3, 'kernel_size')


@dataclass(frozen=True)
class Loc:
    source: str
    line: int = 0  # 1-based; 0 when unknown (e.g. a --set override)
    column: int = 0

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}" if self.line else self.source


def parse(text: str, source: str) -> tuple[object, dict[Path_, Loc]]:
    """Data and a location for every key path in it."""
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = Loc(source, mark.line + 1, mark.column + 1) if mark else Loc(source)
        problem = getattr(e, "problem", None) or str(e)
        raise UserError(f"{where}: this is not valid YAML ({problem}). Check the indentation "
                        f"and quoting around that line.") from e
    if node is None:
        return {}, {}
    locs: dict[Path_, Loc] = {}
    _walk(node, (), source, locs)
    return data, locs


def _walk(node, path, source, locs, own_loc=True):
    """Record locations; a mapping entry is located at its key, as editors show it."""
    if own_loc:
        locs[path] = Loc(source, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            locs[path + (key,)] = Loc(source, key_node.start_mark.line + 1,
                                      key_node.start_mark.column + 1)
            _walk(value_node, path + (key,), source, locs, own_loc=False)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), source, locs)


def read(path: Path) -> tuple[object, dict[Path_, Loc]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UserError(f"{path}: no such config file. Check the path (configs/ holds the "
                        f"shipped ones).") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read this file ({e}).") from e
    return parse(text, str(path))


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
