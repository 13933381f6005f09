"""Rebuild a trained model from a checkpoint alone (its config travels inside it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import ValidationError

from ..config.schema import RunConfig
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


def load_trained(path) -> Trained:
    path = Path(path)
    weights, _, info = checkpoint.load(path)
    try:
        cfg = RunConfig.model_validate(yaml.safe_load(info["config"]))
        model = Model(cfg.model.layers, cfg.model.input_shape)
    except (KeyError, yaml.YAMLError, ValidationError, ShapeError) as e:
        raise UserError(f"{path}: the config stored in this checkpoint is unusable ({e}).") from e
    dtype = np.dtype(cfg.train.dtype)
    state = model.init(seed=0, dtype=dtype)
    flat = flatten(state)
    checkpoint.check_weights(path, weights, {n: a.shape for n, a in flat.items()})
    for name, arr in weights.items():
        flat[name][...] = arr.astype(dtype)
    return Trained(cfg, model, state, info)
