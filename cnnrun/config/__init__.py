"""Config files: schema, YAML with locations, ``extends``, ``--set`` and error reports."""

from .loader import load_config
from .schema import RunConfig

__all__ = ["RunConfig", "load_config"]
