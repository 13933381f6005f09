"""A/B of two source trees of cnnrun on `cnnrun bench`, in alternating fresh processes.

    python benchmarks/ab_trees.py OLD_TREE NEW_TREE [--rounds 5]

Each round runs A then B, then B then A (so neither always goes first), for LeNet-5 at
batch 64 and resnet20-cifar10 at batch 128, and reports per config the median (min–max)
of t_old / t_new for the training step and inference (above 1: the new tree is faster).
Also times `cnnrun --help` and `cnnrun summary configs/vgg16.yaml` start-up the same way.
Used for the house redesign (issue 25); the numbers go to benchmarks/results.md."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = [("lenet5", 64, 30), ("resnet20-cifar10", 128, 5)]


def bench(tree: Path, config: str, batch: int, steps: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "cnnrun", "bench", str(tree / "configs" / f"{config}.yaml"),
           "--batch-size", str(batch), "--steps", str(steps), "--warmup", "2", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def start_up(tree: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnrun", *args], env=env, capture_output=True,
                   check=True, cwd=tree)
    return time.perf_counter() - t0


def spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    trees = {"old": a.old.resolve(), "new": a.new.resolve()}
    for config, batch, steps in CASES:
        times = {"old": [], "new": []}
        for r in range(a.rounds):
            for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                res = bench(trees[which], config, batch, steps)
                times[which].append((res["train_step_ms"], res["infer_ms"]))
        train = [o[0] / n[0] for o, n in zip(times["old"], times["new"])]
        infer = [o[1] / n[1] for o, n in zip(times["old"], times["new"])]
        print(f"{config} batch {batch}: train t_old/t_new {spread(train)}, "
              f"infer {spread(infer)}; new train {statistics.median(n[0] for n in times['new']):.1f} ms")
    for args in (["--help"], ["summary", "configs/vgg16.yaml"]):
        s = {"old": [], "new": []}
        for r in range(a.rounds):
            for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                s[which].append(start_up(trees[which], args))
        print(f"cnnrun {' '.join(args)}: old {statistics.median(s['old']):.3f} s, "
              f"new {statistics.median(s['new']):.3f} s "
              f"(ratio {spread([o / n for o, n in zip(s['old'], s['new'])])})")


if __name__ == "__main__":
    main()
