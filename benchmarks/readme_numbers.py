"""Rewrite the README's numbers from the commands that produce them, so it cannot drift.

    python benchmarks/readme_numbers.py             # train LeNet-5 as the README says, then
                                                    # rewrite its training block and numbers
    python benchmarks/readme_numbers.py --examples  # rewrite every marked example block

Inline numbers sit between ``<!-- n:KEY -->`` and ``<!-- /n -->``; the training block follows
``<!-- numbers: lenet5 -->``. Each rewrite stamps the machine and the commit it was measured
on (``n:stamp``). tests/cli/test_readme.py checks the example blocks on every CI run and that a
fresh training reproduces the stated accuracy.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers.readme import README, examples, run_example  # noqa: E402


def set_number(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"(<!-- n:{re.escape(key)} -->).*?(<!-- /n -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README has no <!-- n:{key} --> marker")
    return pattern.sub(lambda m: m[1] + value + m[2], text)


def train(name: str) -> tuple[list[str], float, float]:
    """(the printed lines, test accuracy in %, seconds) of `cnnrun train configs/NAME.yaml`."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "cnnrun", "train", f"configs/{name}.yaml",
                            "--out", f"{tmp}/run"], cwd=ROOT, capture_output=True, text=True,
                           check=True)
        seconds = time.perf_counter() - start
    lines = [line.replace(f"{tmp}/run", f"runs/{name}/<time>") for line in r.stdout.splitlines()]
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", r.stdout)[1])
    return lines, accuracy, seconds


def stamp() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return (f"measured by `python benchmarks/readme_numbers.py` on {os.cpu_count()} cores "
            f"({platform.machine()}, Python {platform.python_version()}) at commit {commit}")


def rewrite_examples(text: str) -> str:
    for folder, args, block, (lo, hi) in reversed(list(examples(text))):
        printed = run_example(folder, args)
        keep = [b if "…" in b else p for b, p in zip(block.splitlines(), printed.splitlines())]
        new = "\n".join(keep) + "\n" if len(keep) == len(printed.splitlines()) else printed
        text = text[:lo] + new + text[hi:]
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", action="store_true", help="rewrite the example blocks")
    args = parser.parse_args()
    text = README.read_text()
    if args.examples:
        README.write_text(rewrite_examples(text))
        return
    lines, accuracy, seconds = train("lenet5")
    _, original, _ = train("lenet5-1998")
    block = re.compile(r"(<!-- numbers: lenet5 -->\n```\n).*?(```)", re.S)
    text = block.sub(lambda m: m[1] + "\n".join(lines) + "\n" + m[2], text)
    text = set_number(text, "lenet5-accuracy", f"{accuracy:.2f} %")
    text = set_number(text, "lenet5-seconds", f"{seconds:.0f}")
    text = set_number(text, "lenet5-1998-accuracy", f"{original:.2f} %")
    text = set_number(text, "stamp", stamp())
    README.write_text(text)
    print(f"LeNet-5: {accuracy:.2f} % in {seconds:.1f} s, LeNet-5 (1998): {original:.2f} %; "
          f"README rewritten")


if __name__ == "__main__":
    main()
