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


PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
CONVERT = ("python -c \"import torch, safetensors.torch as st; "
           "st.save_file(torch.load('{path}', weights_only=True), '{stem}.safetensors')\"")


def read_tensors(path, need_info: bool = True) -> tuple[dict, dict, dict | None]:
    """(weights, optimizer state, info or None) of a safetensors file. With ``need_info`` it
    must be a cnnrun checkpoint (its metadata holds the run); without, any safetensors file
    of weights will do (a PyTorch state_dict saved with safetensors). A torch.save file is never
    unpickled: it is refused with the one line that converts it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as from_bytes
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint. Runs keep theirs in "
                        f"runs/<name>/<time>/checkpoints/.")
    # a regular file, and no larger than the memory it would be read into
    raw = read_bytes(path, "checkpoint", available_memory())
    if _pickled(path, raw):
        raise UserError(f"{path}: a PyTorch torch.save file; cnnrun never unpickles one, since "
                        f"unpickling can run any code. Convert it once to safetensors: "
                        f"{CONVERT.format(path=path, stem=path.with_suffix(''))}")
    try:
        tensors = from_bytes(raw)
        meta = _metadata(raw) or {}
        if need_info and "cnnrun" not in meta:
            raise UserError(f"{path}: holds weights but not a cnnrun run's record (a PyTorch "
                            f"state_dict saved with safetensors?). Load it with --init-weights, "
                            f"or give eval, predict or export the network's config with "
                            f"--config.")
        info = json.loads(meta["cnnrun"]) if "cnnrun" in meta else None
        if (need_info or info is not None) and not isinstance(info, dict):
            raise ValueError(f"its metadata is {type(info).__name__}, not a mapping")
    except (SafetensorError, ValueError, KeyError, TypeError, AttributeError,
            json.JSONDecodeError) as e:
        what = "cnnrun checkpoint" if need_info else "safetensors file"
        raise UserError(f"{path}: not a readable {what} ({e}); it may be truncated or "
                        f"corrupted. Use another one (last.safetensors or best.safetensors) "
                        f"or train again.") from e
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPT_PREFIX)}
    opt = {k[len(OPT_PREFIX):]: v for k, v in tensors.items() if k.startswith(OPT_PREFIX)}
    return weights, opt, info


def _pickled(path: Path, raw: bytes) -> bool:
    """torch.save's zip or a bare pickled stream, not safetensors (whose JSON header starts at
    byte 8)."""
    if raw[8:9] == b"{":
        return False
    return path.suffix in PICKLE_SUFFIXES or raw[:4] == b"PK\x03\x04" or raw[:1] == b"\x80"


def load(path) -> tuple[dict, dict, dict]:
    """(weights, optimizer state, info) of a cnnrun checkpoint; a missing or damaged file is a
    UserError."""
    return read_tensors(path, need_info=True)


def load_weights(path) -> dict:
    """The weights of any safetensors file: a cnnrun checkpoint's, or a PyTorch state_dict's
    (its ``num_batches_tracked`` counters, which cnnrun has no use for, dropped)."""
    return weights_only(read_tensors(path, need_info=False)[0])


def weights_only(weights: dict) -> dict:
    """A state_dict's tensors less PyTorch's ``num_batches_tracked`` counters."""
    return {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}


def read_info(path) -> dict | None:
    """A checkpoint's run record from its header alone (not its tensors), or None where the
    file is not a readable cnnrun checkpoint: for listings such as ``cnnrun runs``."""
    path = Path(path)
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > 100 * 2**20:  # a header that large is not one cnnrun wrote
                return None
            info = json.loads(json.loads(f.read(n))["__metadata__"]["cnnrun"])
        return info if isinstance(info, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
            parts.append(f"{len(missing)} missing: {_listed(missing)}")
        if extra:
            parts.append(f"{len(extra)} unexpected: {_listed(extra)}")
        if wrong:
            parts.append(f"{len(wrong)} of another shape: " + _listed(
                [f"{n} {tuple(weights[n].shape)} vs model {tuple(expected[n])}" for n in wrong]))
        raise UserError(f"{path}: does not fit this model ({'; '.join(parts)}). Names must match "
                        f"the config's layer names (cnnrun summary lists them) and shapes "
                        f"PyTorch's layouts; use weights written for the same architecture.")


def _listed(items, most: int = 20) -> str:
    return ", ".join(items[:most]) + (f" and {len(items) - most} more" if len(items) > most else "")
