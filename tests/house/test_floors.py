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
    ("engine", {"cnnrun.engine", "cnnrun.data", "cnnrun.export"}),
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


def imports(path: Path):
    """(line, imported module) of every import of a cnnrun module, TYPE_CHECKING blocks aside."""
    mod, is_pkg = module_name(path)
    tree = ast.parse(path.read_text())
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


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_higher_floor(path):
    mod, _ = module_name(path)
    own = floor_of(mod)
    upward = [f"line {line}: {target} ({FLOORS[floor_of(target)][0]})"
              for line, target in imports(path) if floor_of(target) > own]
    assert not upward, f"{mod} ({FLOORS[own][0]}) imports a higher floor: {'; '.join(upward)}"


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """A layer importing the trainer is caught (the checker itself can fail)."""
    fake = PACKAGE / "layers" / "conv.py"
    source = fake.read_text() + "\nfrom ..train.trainer import Trainer\n"
    probe = tmp_path / "conv.py"
    probe.write_text(source)
    monkeypatch.setattr(fake.__class__, "read_text", lambda self, *a, **k: source
                        if self == fake else Path.read_text.__wrapped__(self, *a, **k)
                        if hasattr(Path.read_text, "__wrapped__") else open(self).read())
    with pytest.raises(AssertionError, match="cnnrun.train.trainer"):
        test_no_module_imports_a_higher_floor(fake)
