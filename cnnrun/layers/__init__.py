"""The layer registry. Every layer module is imported here, explicitly (as timm
does), and the discriminated union of all layer configs is built from it."""

from typing import Annotated, Union

from pydantic import Field
from typing_extensions import TypeAliasType

from ..registry import LAYERS
from . import (activations, branches, channelwise, combine, concat, containers,  # noqa: F401
               conv, dense, global_pool, norm, pool, subsample, transpose)
from .base import RF, Context, Layer, ParamLayer, ShapeError

LAYER_MODULES = (activations, branches, channelwise, combine, concat, containers, conv, dense,
                 global_pool, norm, pool, subsample, transpose)

# A named alias, not a bare Annotated[Union]: pydantic builds a named alias's schema once
# and refers to it, where it rebuilt the union of every layer at each of the seven fields
# that hold layers (RunConfig's first build: 38.5 ms instead of 47.6, medians).
#
# The layer modules, like config/schema.py and losses.py, do without
# ``from __future__ import annotations``: pydantic then reads their field annotations as
# objects rather than evaluating ~500 strings at every start (test_cli guards this).
AnyLayer = TypeAliasType(
    "AnyLayer",
    Annotated[Union[tuple(cls for _, cls in LAYERS.items())], Field(discriminator="type")])

# The containers name ``AnyLayer`` as a forward reference. Layer schemas are built lazily
# (``defer_build``): publishing the alias in their modules lets pydantic resolve it when
# the first config is validated.
containers.AnyLayer = branches.AnyLayer = concat.AnyLayer = AnyLayer

__all__ = ["AnyLayer", "LAYERS", "LAYER_MODULES", "RF", "Context", "Layer", "ParamLayer",
           "ShapeError"]
