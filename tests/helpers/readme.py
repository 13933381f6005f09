"""The README's examples, found and run: a fenced block right after a marker

    <!-- example: cnnrun summary configs/lenet5.yaml -->
    <!-- example in docs/examples: cnnrun validate bad.yaml -->

is what that command prints, run in-process from the repository root (or the folder named)
on an 80-column terminal. In the README, '…' stands for any text on its line (a list of all
layer types, say). ``benchmarks/readme_numbers.py --examples`` rewrites the blocks."""

import os
import re
import shlex
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- example(?: in (?P<dir>\S+))?: cnnrun (?P<args>[^>]*?) -->\n```\n"
                    r"(?P<block>.*?)```", re.S)


def examples(text: str | None = None):
    """(folder, argument list, block text, span of the block) per marked example."""
    text = README.read_text() if text is None else text
    for m in MARKER.finditer(text):
        yield ROOT / (m["dir"] or "."), shlex.split(m["args"]), m["block"], m.span("block")


@contextmanager
def _inside(folder: Path):
    here = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


def run_example(folder: Path, args: list[str]) -> str:
    from typer.testing import CliRunner

    from cnnrun.cli import app
    with _inside(folder):
        r = CliRunner().invoke(app, args, env={"COLUMNS": "80", "NO_COLOR": "1"})
    return "\n".join(line.rstrip() for line in r.output.splitlines()).strip("\n") + "\n"


def matches(shown: str, printed: str) -> bool:
    """Line by line, trailing spaces aside; '…' in the README matches any text."""
    a, b = shown.strip("\n").splitlines(), printed.strip("\n").splitlines()
    if len(a) != len(b):
        return False
    for want, got in zip(a, b):
        pattern = ".*".join(re.escape(part) for part in want.rstrip().split("…"))
        if not re.fullmatch(pattern, got.rstrip()):
            return False
    return True
