"""YAML with locations: every value's (file, line, column), for errors that point at it.

Only the safe loader is used (libyaml's ``CSafeLoader`` when PyYAML has it, which is
several times faster, else ``SafeLoader``). The text is parsed once into a node tree,
which gives the marks; values are built from the same tree with the safe constructor,
so the data is exactly what ``yaml.safe_load`` returns.

Before anything is built, the node tree is checked (``check_tree``): a key given twice in
one mapping is an error naming both lines (YAML would silently keep the last), and the
tree may not nest deeper than MAX_DEPTH nor expand to more than MAX_VALUES values once
its aliases are followed, nor refer to itself. A kilobyte of nested aliases (a "billion
laughs" file) would otherwise expand to billions of values in every walk that follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import UserError
from ..safe_io import MB, read_bytes

MAX_DEPTH = 100  # nesting levels of a config
MAX_VALUES = 200_000  # values once aliases are followed (VGG-16's config has about 400)

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
        if node is not None:
            check_tree(node, source)
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


def check_tree(node, source: str) -> None:
    """Duplicate keys, depth, self-reference and expanded size, before anything is built."""
    sizes: dict[int, int] = {}

    def size(n, depth, open_):
        if id(n) in sizes:
            return sizes[id(n)]
        where = Loc(source, n.start_mark.line + 1, n.start_mark.column + 1)
        if depth > MAX_DEPTH:
            raise UserError(f"{where}: the config nests deeper than {MAX_DEPTH} levels here; "
                            f"flatten it (a `repeat` or a block replaces deep nesting).")
        if id(n) in open_:
            raise UserError(f"{where}: this value contains itself (a YAML alias of an "
                            f"enclosing anchor); a config must be a tree.")
        open_.add(id(n))
        children = [c for kv in n.value for c in kv] if isinstance(n, yaml.MappingNode) else \
            n.value if isinstance(n, yaml.SequenceNode) else []
        if isinstance(n, yaml.MappingNode):
            _no_duplicate_keys(n, source)
        total = 1 + sum(size(c, depth + 1, open_) for c in children)
        open_.discard(id(n))
        if total > MAX_VALUES:
            raise UserError(f"{where}: the config expands to more than {MAX_VALUES:,} values "
                            f"once its YAML aliases are followed; a config this size is a "
                            f"mistake or an attack. Write the values out, or use a block.")
        sizes[id(n)] = total
        return total

    size(node, 0, set())


def _no_duplicate_keys(node, source: str) -> None:
    seen = {}
    for key_node, _ in node.value:
        key = key_node.value
        if not isinstance(key, str) or key == "<<":  # merge keys may repeat
            continue
        here = Loc(source, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        if key in seen:
            raise UserError(f"{here}: the key '{key}' is given twice in this mapping (also at "
                            f"line {seen[key].line}); YAML would keep only the last. Remove "
                            f"one.")
        seen[key] = here


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
    """A config file (a regular file of at most a megabyte, UTF-8), parsed with locations."""
    if not Path(path).exists():
        raise UserError(f"{path}: no such config file. Check the path (configs/ holds the "
                        f"shipped ones).")
    raw = read_bytes(path, "config", MB)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); is this a config file?") from e
    return parse(text, str(path))


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
