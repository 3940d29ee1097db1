"""JSON Schemas of the configuration files, generated from the pydantic models.

Editors (VS Code's YAML extension, JetBrains) use them for completion and
inline checks: add `# yaml-language-server: $schema=crmhub-settings.schema.json`
at the top of a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from crmhub.config.mappings import HistoryMappings, IdentityMappings, RoutingRules
from crmhub.config.settings import Settings

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
FILE_KINDS: dict[str, type[BaseModel]] = {
    "settings": Settings,
    "identities": IdentityMappings,
    "routing": RoutingRules,
    "history": HistoryMappings,
}


def json_schema() -> dict[str, dict[str, Any]]:
    """One JSON Schema per file kind: "settings", "identities", "routing", "history"."""
    schemas = {}
    for kind, model in FILE_KINDS.items():
        schema = model.model_json_schema(mode="validation")
        schemas[kind] = {
            "$schema": SCHEMA_DIALECT,
            "$id": f"https://crmhub.dev/schemas/crmhub-{kind}.schema.json",
            **schema,
            "title": f"crmhub {kind}.yaml" if kind != "settings" else "crmhub settings.yaml",
        }
    return schemas


def write_schemas(directory: Path) -> list[Path]:
    """Write `crmhub-<kind>.schema.json` for each file kind into `directory` (created if needed).

    Returns:
        The files written, in the order settings, identities, routing, history.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, schema in json_schema().items():
        path = directory / f"crmhub-{kind}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        written.append(path)
    return written
