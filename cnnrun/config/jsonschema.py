"""The JSON Schema of config files (``cnnrun schema``), for YAML editors.

pydantic writes the schema of ``RunConfig``, with the layer union discriminated
on ``type`` (so an editor offers each layer's own fields) and defined once, as
``$defs/AnyLayer``. Three things the loader accepts before pydantic sees the
file are added: ``extends`` (then the file may be partial), ``blocks``
templates, and ``use:`` items in layer lists.
"""

from __future__ import annotations

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"

USE_ITEM = {
    "type": "object",
    "title": "use",
    "description": "an instance of a template from blocks: (repeat: N makes a sequential "
                   "of N copies; first: overrides the first copy's parameters)",
    "required": ["use"],
    "properties": {"use": {"type": "string"}, "name": {"type": "string"},
                   "repeat": {"type": "integer", "minimum": 1},
                   "first": {"type": "object"}, "names": {"type": "string"}},
    "additionalProperties": True,  # the template's own parameters
}


def _allow_use_items(schema: dict) -> None:
    """Wherever a list holds layers, also accept a ``use:`` item: every such list refers to
    the one named layer union (``layers.AnyLayer``), which becomes "a layer or a use"."""
    defs = schema["$defs"]
    union = defs["AnyLayer"]
    assert union.get("discriminator", {}).get("propertyName") == "type", union.keys()
    defs["AnyLayer"] = {"anyOf": [union, {"$ref": "#/$defs/UseBlock"}]}


def config_schema() -> dict:
    from .schema import RunConfig  # noqa: PLC0415 - builds every layer's schema
    schema = RunConfig.model_json_schema()
    _allow_use_items(schema)
    schema["$defs"]["UseBlock"] = USE_ITEM
    props = schema["properties"]
    props["extends"] = {"type": "string",
                        "description": "a base config (path relative to this file) merged "
                                       "under this one: mappings merge, lists replace"}
    props["blocks"] = {"type": "object", "description": "named layer templates: {params, layer}",
                       "additionalProperties": {"type": "object"}}
    required = schema.pop("required", [])
    if required:  # a file that extends another may leave the required keys to it
        schema["if"] = {"not": {"anyOf": [{"required": ["extends"]},
                                          {"required": ["blocks"]}]}}
        schema["then"] = {"required": required}
    schema["$schema"] = SCHEMA_URI
    schema["title"] = "cnnrun config"
    return schema
