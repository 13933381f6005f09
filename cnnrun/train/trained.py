"""Rebuild a trained model from a checkpoint alone (its config travels inside it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from ..config.schema import RunConfig
from ..config.yamlsource import parse
from ..errors import UserError
from ..layers import ShapeError
from ..engine.model import Model, flatten
from . import checkpoint
from .run_state import stats_from_json


@dataclass
class Trained:
    cfg: RunConfig
    model: Model
    state: dict
    info: dict

    @property
    def stats(self):
        return stats_from_json(self.info.get("data_stats"))

    @property
    def classes(self) -> list[str]:
        return self.info.get("classes") or [str(i) for i in range(self.model.output_shape[0])]


def load_trained(path, config=None) -> Trained:
    """A checkpoint as a network. Its own stored config builds it; with ``config`` (a YAML
    file), that config does, and ``path`` may be any safetensors file of weights in its
    layer names (a PyTorch state_dict saved with safetensors)."""
    path = Path(path)
    if config is not None:
        from ..config import load_config
        cfg = load_config(config)
        weights, _, info = checkpoint.read_tensors(path, need_info=False)  # one read
        weights, info = checkpoint.weights_only(weights), info or {}
        model = Model(cfg.model.layers, cfg.model.input_shape)
        return _with_weights(path, cfg, model, weights, info)
    weights, _, info = checkpoint.load(path)
    try:  # the files' parser: an alias bomb in a checkpoint is refused as in a config
        data, _ = parse(str(info["config"]), f"{path} (its stored config)")
        cfg = RunConfig.model_validate(data)
        model = Model(cfg.model.layers, cfg.model.input_shape)
    except (KeyError, yaml.YAMLError, ValidationError, ShapeError) as e:
        raise UserError(f"{path}: the config stored in this checkpoint is unusable ({e}).") from e
    return _with_weights(path, cfg, model, weights, info)


def _check_record(path, info: dict, model) -> None:
    """What eval and predict read from a checkpoint's record besides its config: data
    statistics (one finite mean and positive std per input channel) and class names (one
    string per output). A damaged record is refused here, not met inside preprocessing."""
    channels = model.input_shape[0]
    stats = info.get("data_stats")
    if stats is not None:
        try:
            mean, std = (np.asarray(stats[k], dtype=np.float64) for k in ("mean", "std"))
            ok = mean.shape == std.shape == (channels,) and np.isfinite(mean).all() and \
                np.isfinite(std).all() and (std > 0).all()
        except (TypeError, ValueError, KeyError):
            ok = False
        if not ok:
            raise UserError(f"{path}: its data statistics are damaged (need one finite mean and "
                            f"one positive std for each of {channels} input channel(s)).")
    classes = info.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(
            isinstance(c, str) for c in classes) and [len(classes)] == list(model.output_shape)):
        raise UserError(f"{path}: its class names are damaged (need a list of "
                        f"{model.output_shape[0]} strings, one per output).")


def _with_weights(path, cfg, model, weights, info) -> Trained:
    dtype = np.dtype(cfg.train.dtype)
    try:
        state = model.init(seed=0, dtype=dtype)
    except UserError as e:  # its stored config declares more than this machine can hold
        raise UserError(f"{path}: {e}") from e
    flat = flatten(state)
    checkpoint.check_weights(path, weights, {n: a.shape for n, a in flat.items()})
    _check_record(path, info, model)
    for name, arr in weights.items():
        flat[name][...] = arr.astype(dtype)
    return Trained(cfg, model, state, info)
