"""The config file's schema: ``model``, ``data`` and ``train`` (pydantic, extra keys forbidden).

Every default is explicit here, so the resolved config written into each run
directory is complete.
"""

import re
from typing import Annotated, Literal, Optional, Union

from pydantic import (Field, NonNegativeInt, PositiveFloat, PositiveInt,
                      field_validator, model_validator)

from ..layers import AnyLayer
from ..layers.containers import check_unique, named
from ..engine.losses import LOSSES, CrossEntropy
from ..optim.optimizers import OPTIMIZERS, SGD
from ..optim.schedules import SCHEDULES, Constant
from ..registry import Declared


# Section defaults are written `Section.model_construct()`, not `Section()`: constructing
# one compiles its validator at import, a cost every `cnnrun summary` would pay (test_config
# checks that each equals the validated empty section).
class Strict(Declared):
    pass


MOST_PROCESSES = 1024  # beyond any machine; the run caps it at 2 × its cores


# ---- model -------------------------------------------------------------------
class ModelConfig(Strict):
    input_shape: tuple[PositiveInt, ...] = Field(min_length=1, max_length=4,
                                                 description="per-sample (C, H, W), no batch axis")
    layers: list[AnyLayer] = Field(min_length=1)

    @field_validator("layers")
    @classmethod
    def _unique_names(cls, layers):
        check_unique(named(layers), "the model's layers")
        return layers


# ---- data --------------------------------------------------------------------
class Normalize(Strict):
    mean: Optional[list[float]] = Field(None, description="per channel; computed from training "
                                                          "data when omitted")
    std: Optional[list[PositiveFloat]] = None  # 0 would divide by zero

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.mean is None) != (self.std is None) or \
                (self.mean is not None and len(self.mean) != len(self.std)):
            raise ValueError("give mean and std together, one value per channel each")
        return self


class Affine(Strict):
    """Random affine distortions of the lecture notes, each drawn uniformly from its range."""
    rotation: float = Field(0.0, ge=0, description="degrees, ±")
    translate: float = Field(0.0, ge=0, description="fraction of the size, ±")
    scale: tuple[PositiveFloat, PositiveFloat] = (1.0, 1.0)
    shear: float = Field(0.0, ge=0, description="degrees, ±")
    stretch: float = Field(0.0, ge=0, description="fractional change of aspect ratio, ±")


class Augment(Strict):
    random_crop_padding: NonNegativeInt = 0
    hflip: bool = False
    affine: Optional[Affine] = None


class Preprocess(Strict):
    scale: float = 1.0 / 255.0
    normalize: Optional[Normalize] = None
    pad: NonNegativeInt = 0
    resize: Optional[tuple[PositiveInt, PositiveInt]] = None
    background: Optional[tuple[float, float]] = Field(
        None, description="map [0, 1] pixels linearly onto (low, high), e.g. LeNet's (-0.1, 1.175)")


class Synthetic(Strict):
    shape: tuple[PositiveInt, ...] = (1, 28, 28)
    num_classes: PositiveInt = 10
    train_size: PositiveInt = 512
    test_size: PositiveInt = 128


class DataConfig(Strict):
    dataset: Literal["mnist", "fashion_mnist", "cifar10", "image_folder", "synthetic"] = "mnist"
    root: Optional[str] = Field(None, description="directory of the files; None: the shipped "
                                                  "MNIST subset")
    download: bool = False
    mirror: Optional[str] = Field(None, description="base URL to download from instead of the "
                                                    "default MNIST mirror")
    cache_dir: Optional[str] = Field(None, description="where downloads go; default "
                                                       "~/.cache/cnnrun/<dataset>")
    train_limit: Optional[PositiveInt] = Field(None, description="use only the first N training "
                                                                 "samples")
    test_limit: Optional[PositiveInt] = None
    val_split: Union[NonNegativeInt, Annotated[float, Field(ge=0.0, lt=1.0)]] = 0
    preprocess: Preprocess = Preprocess.model_construct()
    augment: Augment = Augment.model_construct()
    synthetic: Synthetic = Synthetic.model_construct()


# ---- optimisation ------------------------------------------------------------
# Each declared kind's union is read from its registry (optim/, engine/losses.py): a type
# registered there is accepted here, listed by `cnnrun layers`' siblings and known to
# `summary`, with nothing else to update.
AnyOptimizer = OPTIMIZERS.union()
AnySchedule = SCHEDULES.union()
AnyLoss = LOSSES.union()


class EarlyStopping(Strict):
    patience: PositiveInt = 5
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


DEFAULT_TAGS = {"optimizer": "sgd", "schedule": "constant", "loss": "cross_entropy"}


class TrainConfig(Strict):
    @model_validator(mode="before")
    @classmethod
    def _default_tags(cls, data):
        """``optimizer: {lr: 0.1}`` means the default type, as when the block is absent."""
        if isinstance(data, dict):
            for key, tag in DEFAULT_TAGS.items():
                if isinstance(data.get(key), dict) and "type" not in data[key]:
                    data = {**data, key: {"type": tag, **data[key]}}
        return data

    epochs: int = 10

    @field_validator("epochs")
    @classmethod
    def _trains_something(cls, epochs):
        if epochs < 1:
            raise ValueError(f"must be ≥ 1, got {epochs}; {epochs} epochs trains nothing: to "
                             f"score a model as it is, run cnnrun eval CHECKPOINT (with "
                             f"--config CONFIG for a weights-only file)")
        return epochs
    batch_size: PositiveInt = 64
    optimizer: AnyOptimizer = SGD.model_construct()
    schedule: AnySchedule = Constant.model_construct()
    loss: AnyLoss = CrossEntropy.model_construct()
    seed: NonNegativeInt = 0  # NumPy's generators take no negative seed
    dtype: Literal["float32", "float64"] = "float32"
    backend: Literal["numpy", "cupy", "auto"] = "numpy"
    processes: Union[Literal["auto"], Annotated[int, Field(ge=1, le=MOST_PROCESSES)]] = Field(
        "auto", description="processes each batch is cut over (CPU): 'auto' uses every core "
                            "where the network's state is small (see the README)")
    monitor: Literal["val_loss", "val_accuracy", "train_loss"] = "val_accuracy"
    lr_mult: dict[str, PositiveFloat] = Field({}, description="name pattern → learning-rate factor")
    no_decay: list[str] = Field([], description="'bias', 'norm' or name patterns without decay")
    grad_clip_norm: Optional[PositiveFloat] = None
    early_stopping: Optional[EarlyStopping] = None
    log_every: PositiveInt = 20


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class RunConfig(Strict):
    name: Optional[str] = Field(None, description="the runs/<name>/ directory; the config "
                                                  "file's name if omitted")

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, name):
        """Runs are written under runs/<name>/: a name is one directory of safe characters,
        never a path (``../x``, ``/abs``) or a name a shell or another system mangles."""
        if name is not None and not RUN_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a run name: use letters, digits, '.', '_' and "
                             f"'-' (at most 100, starting with a letter or digit); runs are "
                             f"written under runs/<name>/")
        return name
    log: list[Literal["tensorboard"]] = Field(
        [], description="extra views of the metrics (metrics.jsonl and .csv are always written)")
    model: ModelConfig
    data: DataConfig = DataConfig.model_construct()
    train: TrainConfig = TrainConfig.model_construct()

    @model_validator(mode="after")
    def _normalize_per_input_channel(self):
        norm = self.data.preprocess.normalize
        channels = self.model.input_shape[0]
        if norm is not None and norm.mean is not None and len(norm.mean) != channels:
            raise ValueError(f"data.preprocess.normalize has {len(norm.mean)} values per "
                             f"statistic, but the model's input has {channels} channel(s)")
        return self
