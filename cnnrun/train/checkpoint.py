"""Checkpoints: one safetensors file, nothing pickled, written atomically.

Tensors: the model's parameters and buffers under PyTorch-style names
(``conv1.weight``, ``bn1.running_mean``) in PyTorch layouts, so a PyTorch
model with the same layer names loads them (``strict=False``, or drop the
``optimizer.`` keys); the optimizer's state under ``optimizer.<param>.<slot>``.
Metadata (strings): ``cnnrun`` holds JSON with the format version, the
resolved config (YAML), epoch, step, data position, schedule, best metric,
early-stopping state and the optimizer's step count.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..safe_io import available_memory, read_bytes

FORMAT = 1
OPT_PREFIX = "optimizer."


def save(path, weights: dict, optimizer_state: dict, info: dict) -> Path:
    """Write atomically: a temporary file in the same directory, fsync, rename, fsync dir."""
    from safetensors.numpy import save as to_bytes
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    tensors.update({OPT_PREFIX + k: np.ascontiguousarray(v) for k, v in optimizer_state.items()})
    data = to_bytes(tensors, metadata={"cnnrun": json.dumps({"format": FORMAT, **info})})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path) -> tuple[dict, dict, dict]:
    """(weights, optimizer state, info); a missing or damaged file is a UserError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as from_bytes
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint. Runs keep theirs in "
                        f"runs/<name>/<time>/checkpoints/.")
    # a regular file, and no larger than the memory it would be read into
    raw = read_bytes(path, "checkpoint", available_memory())
    try:
        tensors = from_bytes(raw)
        meta = _metadata(raw)
        info = json.loads(meta["cnnrun"])
    except (SafetensorError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable cnnrun checkpoint ({e}); it may be truncated "
                        f"or corrupted. Use another one (last.safetensors or best.safetensors) "
                        f"or train again.") from e
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPT_PREFIX)}
    opt = {k[len(OPT_PREFIX):]: v for k, v in tensors.items() if k.startswith(OPT_PREFIX)}
    return weights, opt, info


def _metadata(raw: bytes) -> dict:
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    return header.get("__metadata__", {})


def check_weights(path, weights: dict, expected: dict[str, tuple]) -> None:
    """Strict loading: the same names and shapes, or an error that lists the differences."""
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    wrong = sorted(n for n in set(expected) & set(weights)
                   if tuple(weights[n].shape) != tuple(expected[n]))
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(
                f"{n} {tuple(weights[n].shape)} vs model {tuple(expected[n])}" for n in wrong[:5]))
        raise UserError(f"{path}: does not fit this model ({'; '.join(parts)}). Use a checkpoint "
                        f"written for the same architecture.")
