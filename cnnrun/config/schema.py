"""The config file's schema: ``model``, ``data`` and ``train`` (pydantic, extra keys forbidden).

Every default is explicit here, so the resolved config written into each run
directory is complete.
"""

from typing import Annotated, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt,
                      field_validator, model_validator)

from ..layers import AnyLayer
from ..layers.containers import check_unique, named
from ..losses import AnyLoss, CrossEntropy


# Section defaults are written `Section.model_construct()`, not `Section()`: constructing
# one compiles its validator at import, a cost every `cnnrun summary` would pay (test_config
# checks that each equals the validated empty section).
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


# ---- model -------------------------------------------------------------------
class ModelConfig(Strict):
    input_shape: tuple[PositiveInt, ...] = Field(description="per-sample (C, H, W), no batch axis")
    layers: list[AnyLayer]

    @field_validator("layers")
    @classmethod
    def _unique_names(cls, layers):
        check_unique(named(layers), "the model's layers")
        return layers


# ---- data --------------------------------------------------------------------
class Normalize(Strict):
    mean: Optional[list[float]] = Field(None, description="per channel; computed from training "
                                                          "data when omitted")
    std: Optional[list[float]] = None


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
class SGD(Strict):
    type: Literal["sgd"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0.0)
    form: Literal["pytorch", "caffe"] = Field("pytorch", description="pytorch: v=μv+g, w-=lr·v; "
                                                                     "caffe: v=μv+lr·g, w-=v")


class Adam(Strict):
    type: Literal["adam"] = "adam"
    lr: PositiveFloat = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: float = Field(0.0, ge=0.0)


class AdamW(Adam):
    type: Literal["adamw"] = "adamw"
    weight_decay: float = Field(0.01, ge=0.0)


class RMSprop(Strict):
    type: Literal["rmsprop"] = "rmsprop"
    lr: PositiveFloat = 1e-2
    alpha: float = Field(0.99, gt=0.0, lt=1.0)
    eps: PositiveFloat = 1e-8
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)


class SDLM(Strict):
    """LeCun's stochastic diagonal Levenberg–Marquardt: w ← w − lr·g/(mu + h), h the diagonal
    of the Gauss–Newton matrix, re-estimated every refresh_every steps from `probes` exact
    Gauss–Newton-vector products (h ≈ mean of v∘Gv over random ±1 vectors v)."""
    type: Literal["sdlm"] = "sdlm"
    lr: PositiveFloat = 0.01
    mu: PositiveFloat = Field(0.02, description="damping: bounds the step where h ≈ 0")
    probes: PositiveInt = 4
    refresh_every: PositiveInt = 250
    weight_decay: float = Field(0.0, ge=0.0)


AnyOptimizer = Annotated[Union[SGD, Adam, AdamW, RMSprop, SDLM], Field(discriminator="type")]


class Warmup(Strict):
    steps: NonNegativeInt = 0
    start_factor: float = Field(0.0, ge=0.0, le=1.0)


class Constant(Strict):
    type: Literal["constant"] = "constant"
    warmup: Warmup = Warmup.model_construct()


class StepLR(Constant):
    type: Literal["step"] = "step"
    step_size: PositiveInt = 10
    gamma: PositiveFloat = 0.1


class MultiStep(Constant):
    type: Literal["multistep"] = "multistep"
    milestones: list[PositiveInt] = []
    gamma: PositiveFloat = 0.1


class Exponential(Constant):
    type: Literal["exponential"] = "exponential"
    gamma: PositiveFloat = 0.95


class Cosine(Constant):
    type: Literal["cosine"] = "cosine"
    t_max: Optional[PositiveInt] = Field(None, description="epochs; the run's epochs if omitted")
    eta_min: float = Field(0.0, ge=0.0)


class Inv(Constant):
    type: Literal["inv"] = "inv"
    gamma: float = Field(1e-4, ge=0.0)
    power: float = 0.75


class Poly(Constant):
    type: Literal["poly"] = "poly"
    power: float = 1.0
    max_steps: Optional[PositiveInt] = Field(None, description="iterations; the run's if omitted")


class Plateau(Constant):
    type: Literal["plateau"] = "plateau"
    factor: float = Field(0.1, gt=0.0, lt=1.0)
    patience: NonNegativeInt = 10
    threshold: float = Field(1e-4, ge=0.0)
    cooldown: NonNegativeInt = 0
    min_lr: float = Field(0.0, ge=0.0)


AnySchedule = Annotated[Union[Constant, StepLR, MultiStep, Exponential, Cosine, Inv, Poly,
                              Plateau], Field(discriminator="type")]


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

    epochs: PositiveInt = 10
    batch_size: PositiveInt = 64
    optimizer: AnyOptimizer = SGD.model_construct()
    schedule: AnySchedule = Constant.model_construct()
    loss: AnyLoss = CrossEntropy.model_construct()
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    backend: Literal["numpy", "cupy", "auto"] = "numpy"
    processes: Union[Literal["auto"], PositiveInt] = Field(
        "auto", description="processes each batch is cut over (CPU): 'auto' uses every core "
                            "for networks without batch norm or dropout")
    monitor: Literal["val_loss", "val_accuracy", "train_loss"] = "val_accuracy"
    lr_mult: dict[str, PositiveFloat] = Field({}, description="name pattern → learning-rate factor")
    no_decay: list[str] = Field([], description="'bias', 'norm' or name patterns without decay")
    grad_clip_norm: Optional[PositiveFloat] = None
    early_stopping: Optional[EarlyStopping] = None
    log_every: PositiveInt = 20


class RunConfig(Strict):
    name: Optional[str] = None
    log: list[Literal["tensorboard"]] = Field(
        [], description="extra views of the metrics (metrics.jsonl and .csv are always written)")
    model: ModelConfig
    data: DataConfig = DataConfig.model_construct()
    train: TrainConfig = TrainConfig.model_construct()
