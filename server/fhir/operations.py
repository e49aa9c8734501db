"""The OperationDefinitions of the scheduling operations, kept as data.

`profiles/operations/*.json` holds one R4 OperationDefinition per operation (`$find`, `$hold`,
`$book`, `$cancel`, `$cancel-appointments`, `$doses`, `$generate-slots`), written in the style of
the Argonaut Scheduling IG. They are read once, checked with `fhir.resources`, and shared
read-only: the CapabilityStatement lists them per resource type and the API serves each one at
`OperationDefinition/{id}`. A handler may read its inputs' names and cardinalities from here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from fhir.resources.R4B.operationdefinition import OperationDefinition

from server.fhir.resources import PROFILES

OPERATIONS = PROFILES / "operations"


@cache
def definitions() -> list[dict[str, Any]]:
    """Every OperationDefinition, in file-name order. Shared: callers must not modify them."""
    loaded = [json.loads(path.read_text()) for path in sorted(OPERATIONS.glob("*.json"))]
    for definition in loaded:
        OperationDefinition.model_validate(definition)
    return loaded


def for_type(resource_type: str) -> list[dict[str, Any]]:
    """The operations invoked on `resource_type` (at type or instance level)."""
    return [d for d in definitions() if resource_type in d["resource"]]


def get(definition_id: str) -> dict[str, Any] | None:
    return next((d for d in definitions() if d["id"] == definition_id), None)


def input_names(definition_id: str) -> frozenset[str]:
    definition = get(definition_id) or {"parameter": []}
    return frozenset(p["name"] for p in definition["parameter"] if p["use"] == "in")
