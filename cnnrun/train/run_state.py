"""What a checkpoint records besides its tensors, named once: the writer (the trainer's
``save``), the resumer (``Trainer._resume``) and the reader of a trained network
(``trained.load_trained``) all go through ``RunState``.

A run resumes exactly from it: the position (epoch, batch within it, global step), the
optimizer's step count, the schedule's and the monitor's state, and the running sums of the
epoch in progress. The resolved config, the data statistics and the class names make the
checkpoint usable alone (``eval``, ``predict``, ``export``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import UserError


@dataclass
class RunState:
    config: str  # the resolved config, as YAML
    epoch: int  # epochs finished
    batch: int  # batches of the epoch in progress already trained
    step: int  # optimizer steps so far
    optimizer_steps: int
    schedule: dict
    best: float | None  # the monitored metric's best value
    bad_epochs: int
    monitor: str
    partial: dict  # the running sums of the epoch in progress
    data_stats: dict | None  # {"mean": [...], "std": [...]} per channel, or None
    classes: list | None

    def to_info(self) -> dict:
        return asdict(self)

    @classmethod
    def from_info(cls, path, info: dict) -> "RunState":
        """The state of a checkpoint written by a run; one that lacks a field says which."""
        missing = [f.name for f in fields(cls) if f.name not in info]
        if missing:
            raise UserError(f"{path}: this checkpoint's metadata lacks {', '.join(missing)}, so "
                            f"it cannot resume a run. Load its weights with --init-weights "
                            f"instead, or resume from a checkpoint that cnnrun train wrote.")
        return cls(**{f.name: info[f.name] for f in fields(cls)})


# What a resumed run may change: how long it goes on, and how patient its stopping is.
MAY_CHANGE = ("train.epochs", "train.early_stopping.patience")


class _Absent:
    def __repr__(self):
        return "(absent)"


ABSENT = _Absent()


def check_same_training(path, stored_yaml: str, cfg) -> None:
    """A run resumes the training it began: refuse a config that differs from the stored
    one anywhere but MAY_CHANGE, naming the keys."""
    import yaml
    stored = _leaves(yaml.safe_load(stored_yaml) or {})
    now = _leaves(cfg.model_dump(mode="json"))
    differ = sorted((k for k in set(stored) | set(now)
                     if stored.get(k, ABSENT) != now.get(k, ABSENT) and not k.startswith(MAY_CHANGE)),
                    key=lambda k: (not k.endswith(".type"), k))  # a changed type explains the rest
    if differ:
        shown = "; ".join(f"{k}: {stored.get(k, ABSENT)!r} → {now.get(k, ABSENT)!r}"
                          for k in differ[:5])
        raise UserError(f"--resume {path}: the config differs from the run's ({shown}"
                        f"{'; …' if len(differ) > 5 else ''}). A resumed run continues the same "
                        f"training and may change only {' and '.join(MAY_CHANGE)}; start a new "
                        f"run for anything else (drop --resume, or use --init-weights).")


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def stats_to_json(stats):
    return None if stats is None else {"mean": list(map(float, stats[0])),
                                       "std": list(map(float, stats[1]))}


def stats_from_json(stats):
    return None if stats is None else (np.asarray(stats["mean"]), np.asarray(stats["std"]))
