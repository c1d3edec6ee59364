"""The JSON Schema of the config file, from the config models, for editors and other tools.

Draft 7, which every editor's validator supports (Taplo's among them), rather than pydantic's
2020-12: the same keywords, with definitions under ``definitions``.

``streetgate config schema`` prints it; docs/config.schema.json is a copy kept in sync by a
test. Durations and sizes are numbers or texts (``"30s"``, ``"256MB"``), a profile a name, a
file or a table, and every table rejects keys it does not know (``additionalProperties:
false``), as the gateway does. The schema checks the shape of a file; the gateway checks more
when it loads it (files exist, a line pattern's groups match its fields, names are unique).
"""

from __future__ import annotations

from typing import Any

from gateway.config.model import GatewayConfig

__all__ = ["SCHEMA_DIALECT", "config_schema"]

SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 7) of a streetgate config file."""
    schema = GatewayConfig.model_json_schema(
        mode="validation", ref_template="#/definitions/{model}"
    )
    schema["definitions"] = schema.pop("$defs")
    _close_maps(schema)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "streetgate gateway config",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _close_maps(node: Any) -> None:
    """A table of named tables (a line sensor's ``fields``) takes only names its pattern allows,
    as the model does: pydantic leaves other names open."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_maps(value)
