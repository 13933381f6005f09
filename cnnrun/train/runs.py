"""A run's directory: resolved config, metrics (JSON lines and CSV) and checkpoints.

    runs/<config name>/<YYYYmmdd-HHMMSS>/
        config.yaml            every default filled in
        metrics.jsonl          one line per epoch ("kind": "epoch") and per logged step
        metrics.csv            one row per epoch
        checkpoints/last.safetensors, checkpoints/best.safetensors
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import shutil
import time
from pathlib import Path

import yaml

from ..errors import UserError
from ..safe_io import dumps_json
from .checkpoint import read_info

# The layout, named once: every reader and writer of a run directory goes through these.
CONFIG, METRICS, METRICS_CSV, CHECKPOINTS = "config.yaml", "metrics.jsonl", "metrics.csv", "checkpoints"


def checkpoint_path(run_dir, which: str) -> Path:
    """``which`` is 'last' or 'best'."""
    return Path(run_dir) / CHECKPOINTS / f"{which}.safetensors"


def run_checkpoint(run_dir) -> Path | None:
    """The run's best checkpoint, else its last one, else None."""
    for which in ("best", "last"):
        if checkpoint_path(run_dir, which).exists():
            return checkpoint_path(run_dir, which)
    return None


EPOCH_FIELDS = ["epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                "test_loss", "test_accuracy", "lr", "seconds"]


RUN_FILES = (CONFIG, METRICS, METRICS_CSV, "tensorboard", "plots")


def new_run_dir(name: str, out: str | None, root: str = "runs", resuming: bool = False,
                force: bool = False) -> Path:
    """The run's directory, made now. Under runs/<name>/ each run claims its stamp by an
    atomic mkdir, so two runs started in the same second get two directories. An ``--out``
    that already holds a run is refused unless the run resumes there (or ``force``)."""
    if out:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path}: a file is there, not a directory; choose another "
                            f"--out.")
        if holds_run(path) and not resuming:
            if not force:
                raise UserError(f"--out {path}: a run is already there (its config, metrics or "
                                f"checkpoints); continue it with --resume "
                                f"{checkpoint_path(path, 'last')}, choose a new --out, or pass "
                                f"--force to replace it.")
            clear_run(path)
    else:
        parent = Path(root) / name
        parent.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in itertools.count(1):
            path = parent / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                path.mkdir()  # atomic: exactly one run gets each name
                break
            except FileExistsError:
                continue
    (path / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    return path


def holds_run(path: Path) -> bool:
    return any((path / f).exists() for f in RUN_FILES) or \
        any(checkpoint_path(path, w).exists() for w in ("last", "best"))


def clear_run(path: Path) -> None:
    """Remove a run's own files (--force), and nothing else in the directory."""
    for f in RUN_FILES:
        target = path / f
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for which in ("last", "best"):
        checkpoint_path(path, which).unlink(missing_ok=True)


def trim_metrics(run_dir: Path, epoch: int, step: int) -> None:
    """Keep only the rows up to a checkpoint's position (epoch rows ≤ epoch, step rows ≤
    step), so a run resumed after a kill logs nothing twice. Rewritten atomically."""
    path = Path(run_dir) / METRICS
    if path.exists():
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from the kill
            limit, key = (epoch, "epoch") if row.get("kind") == "epoch" else (step, "step")
            if row.get(key, 0) <= limit:
                keep.append(line)
        _replace(path, "".join(line + "\n" for line in keep))
    csv_path = Path(run_dir) / METRICS_CSV
    if csv_path.exists():
        rows = list(csv.DictReader(csv_path.read_text(encoding="utf-8").splitlines()))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=EPOCH_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(r for r in rows if r.get("epoch", "").isdigit() and int(r["epoch"]) <= epoch)
        _replace(csv_path, text.getvalue())


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def config_yaml(cfg) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def write_config(run_dir: Path, cfg) -> None:
    (run_dir / CONFIG).write_text(config_yaml(cfg), encoding="utf-8")


class MetricsWriter:
    """Appends rows as they come, flushed each time, so a crash loses nothing written."""

    def __init__(self, run_dir: Path, tensorboard=None):
        self.tensorboard = tensorboard  # an optional second view (train/tensorboard.py)
        self.jsonl = open(run_dir / METRICS, "a", encoding="utf-8")
        csv_path = run_dir / METRICS_CSV
        new = not csv_path.exists() or csv_path.stat().st_size == 0
        self.csv_file = open(csv_path, "a", newline="", encoding="utf-8")
        self.csv = csv.DictWriter(self.csv_file, fieldnames=EPOCH_FIELDS, extrasaction="ignore")
        if new:
            self.csv.writeheader()
            self.csv_file.flush()

    def step(self, row: dict) -> None:
        self._json({"kind": "step", **row})
        if self.tensorboard:
            self.tensorboard.step(row)

    def epoch(self, row: dict, weights: dict | None = None) -> None:
        self._json({"kind": "epoch", **row})
        if self.tensorboard:
            self.tensorboard.epoch(row, weights or {})
        self.csv.writerow({k: row.get(k, "") for k in EPOCH_FIELDS})
        self.csv_file.flush()

    def _json(self, row: dict) -> None:
        self.jsonl.write(dumps_json(row) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
        self.jsonl.close()
        self.csv_file.close()


def read_metrics(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """(epoch rows, step rows) of a run's metrics.jsonl; a torn last line (a crash) is skipped."""
    epochs, steps = [], []
    path = Path(run_dir) / METRICS
    if not path.exists():
        return epochs, steps
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        (epochs if row.get("kind") == "epoch" else steps).append(row)
    return epochs, steps


def summarize_run(run_dir: Path) -> dict:
    """One line of ``cnnrun runs``: what was trained, how far, how well, where the weights are."""
    run_dir = Path(run_dir)
    epochs, _ = read_metrics(run_dir)
    key = "val_accuracy" if any("val_accuracy" in r for r in epochs) else "test_accuracy"
    scores = [r[key] for r in epochs if key in r]
    name = run_dir.parent.name
    try:
        name = yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8"))["name"] or name
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        pass
    stamp = (run_dir / CONFIG) if (run_dir / CONFIG).exists() else run_dir
    row = {"name": name, "run": str(run_dir),
           "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp.stat().st_mtime)),
           "epochs": len(epochs), "best_metric": key, "best": None, "best_epoch": None,
           "chosen_by": None, "checkpoint": str(run_checkpoint(run_dir) or "")}
    # the score of the epoch best.safetensors holds, not the best score of any epoch: the
    # checkpoint is chosen by train.monitor, which may be another metric
    info = read_info(checkpoint_path(run_dir, "best"))
    if info is not None and isinstance(info.get("epoch"), int):
        at = [r for r in epochs if r.get("epoch") == info["epoch"] and key in r]
        row.update(best=at[-1][key] if at else None, best_epoch=info["epoch"],
                   chosen_by=info.get("monitor"))
    elif scores:
        row["best"] = max(scores)
    return row


def find_runs(root) -> list[Path]:
    """Run directories under root (any depth), oldest first: those holding metrics.jsonl."""
    root = Path(root)
    found = {p.parent for p in root.rglob(METRICS)}
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def list_runs(root) -> list[dict]:
    """``cnnrun runs``: one summary per run under root, oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such directory; runs are written under runs/ by "
                        f"'cnnrun train' (or give the directory that holds them).")
    return [summarize_run(p) for p in find_runs(root)]
