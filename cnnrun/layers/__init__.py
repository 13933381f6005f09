"""The layer registry. Every layer module is imported here, explicitly (as timm
does), and the discriminated union of all layer configs is built from it."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from ..registry import LAYERS
from . import (activations, branches, combine, containers, conv, dense, norm,  # noqa: F401
               pool, subsample, transpose)
from .base import RF, Context, Layer, ParamLayer, ShapeError

LAYER_MODULES = (activations, branches, combine, containers, conv, dense, norm, pool, subsample,
                 transpose)

AnyLayer = Annotated[Union[tuple(cls for _, cls in LAYERS.items())], Field(discriminator="type")]

for _cls in (containers.Sequential, branches.Residual, branches.Concat, branches.Dense):
    _cls.model_rebuild(_types_namespace={"AnyLayer": AnyLayer})

__all__ = ["AnyLayer", "LAYERS", "LAYER_MODULES", "RF", "Context", "Layer", "ParamLayer",
           "ShapeError"]
