"""The house's floors: a module imports only from its own floor or those below it, so the
folder a module lies in says what it may import (docs/ARCHITECTURE.md)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cnnrun"

# Lowest first. A module may import its own floor and the floors below, never above.
FLOORS = [
    ("base", {"cnnrun", "cnnrun.errors", "cnnrun.registry", "cnnrun.safe_io"}),
    ("ops", {"cnnrun.ops"}),
    ("layers", {"cnnrun.layers"}),
    ("engine", {"cnnrun.engine", "cnnrun.data", "cnnrun.export", "cnnrun.importer"}),
    ("optim", {"cnnrun.optim"}),
    ("config", {"cnnrun.config"}),
    ("train", {"cnnrun.train"}),
    ("tools", {"cnnrun.tools"}),
    ("cli", {"cnnrun.cli", "cnnrun.__main__"}),
]


def floor_of(module: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    if found is None:
        raise AssertionError(f"{module} lies on no floor: add its folder to FLOORS")
    return found


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def imports(path: Path, source: str | None = None):
    """(line, imported module) of every import of a cnnrun module, TYPE_CHECKING blocks aside
    (``source``: the module's text, if not the file's)."""
    mod, is_pkg = module_name(path)
    tree = ast.parse(path.read_text() if source is None else source)
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
            for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            for n in names if node.module is None else [target]:
                if n.startswith("cnnrun"):
                    yield node.lineno, n
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("cnnrun"):
                    yield node.lineno, a.name


MODULES = sorted(PACKAGE.rglob("*.py"))


def upward_imports(path: Path, source: str | None = None) -> list[str]:
    own = floor_of(module_name(path)[0])
    return [f"line {line}: {target} ({FLOORS[floor_of(target)][0]})"
            for line, target in imports(path, source) if floor_of(target) > own]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_floor(path):
    mod, _ = module_name(path)
    upward = upward_imports(path)
    assert not upward, f"{mod} ({FLOORS[floor_of(mod)][0]}) imports a higher floor: " \
                       f"{'; '.join(upward)}"


def test_the_checker_sees_an_upward_import():
    """A layer importing the trainer is caught, inside a function too; a lower import is not
    (the checker itself can fail)."""
    conv = PACKAGE / "layers" / "conv.py"
    source = conv.read_text() + "\ndef f():\n    from ..train.trainer import Trainer\n"
    assert [u for u in upward_imports(conv, source) if "cnnrun.train.trainer (train)" in u]
    assert upward_imports(conv, "from ..ops.backend import get_array_module\n") == []
