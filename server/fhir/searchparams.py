"""Search parameters, read from the official FHIR SearchParameter definitions.

`profiles/search-parameters.json` holds the official definitions for the served types (see
`profiles/derive.py`). Each definition gives a code, a type and a FHIRPath expression that may
cover several base types; here each is split per served type and compiled once with fhirpathpy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, cast

from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

from server.fhir.resources import PROFILES, SERVED_TYPES

SUPPORTED_TYPES = frozenset({"token", "string", "date", "reference", "number", "quantity", "uri"})
# `resolve()` needs a store; for indexing, a reference's declared type is what it resolves to.
RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")
FHIRPATH_MODEL = models["r4"]


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    resource_type: str
    expression: str
    targets: tuple[str, ...]
    url: str
    evaluate: Callable[..., list[Any]]

    def values(self, resource: dict[str, Any]) -> list[Any]:
        return self.evaluate(resource)


@dataclass(frozen=True)
class Registry:
    """Search parameters by resource type and code."""

    by_type: dict[str, dict[str, SearchParam]]

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.by_type.get(resource_type, {}).get(code)

    def of(self, resource_type: str) -> dict[str, SearchParam]:
        return self.by_type.get(resource_type, {})


def expression_for(expression: str, resource_type: str, bases: list[str]) -> str | None:
    """The part of a (possibly multi-type) expression that applies to `resource_type`."""
    parts = [part.strip() for part in expression.split(" | ")]
    if bases and bases[0] in ("Resource", "DomainResource"):
        parts = [resource_type + part.strip().removeprefix(bases[0]) for part in parts]
    own = [p for p in parts if p.startswith((f"{resource_type}.", f"({resource_type}."))]
    if not own:
        return None
    return RESOLVE_IS.sub(r".where(reference.startsWith('\1/'))", " | ".join(own))


@cache
def registry() -> Registry:
    """The official definitions, then ours (`profiles/SearchParameter-*.json`)."""
    bundle = json.loads((PROFILES / "search-parameters.json").read_text())
    definitions = [entry["resource"] for entry in bundle["entry"]]
    definitions += [
        json.loads(path.read_text()) for path in sorted(PROFILES.glob("SearchParameter-*.json"))
    ]
    by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in SERVED_TYPES}
    for definition in definitions:
        if definition["type"] not in SUPPORTED_TYPES or "expression" not in definition:
            continue
        for resource_type in SERVED_TYPES:
            if not _applies(definition["base"], resource_type):
                continue
            expression = expression_for(definition["expression"], resource_type, definition["base"])
            if expression is None:
                continue
            by_type[resource_type][definition["code"]] = SearchParam(
                code=definition["code"],
                type=definition["type"],
                resource_type=resource_type,
                expression=expression,
                targets=tuple(definition.get("target", ())),
                url=definition["url"],
                evaluate=compile_expression(expression, resource_type),
            )
    return Registry(by_type)


def compile_expression(expression: str, resource_type: str) -> Callable[..., list[Any]]:
    """A plain path (`Slot.schedule`, `Patient.address.city`) is walked directly, several times
    faster than the FHIRPath engine on the write hot path; anything else (choice types, functions,
    unions) goes to fhirpathpy."""
    steps = expression.split(".")
    fields = get_fhir_model_class(resource_type).model_fields
    if (
        steps[0] == resource_type
        and all(map(str.isidentifier, steps[1:]))
        and steps[1] in {info.alias or name for name, info in fields.items()}
    ):
        return partial(_walk, tuple(steps[1:]))
    return cast(Callable[..., list[Any]], compile_fhirpath(expression, model=FHIRPATH_MODEL))


def _walk(steps: tuple[str, ...], resource: dict[str, Any]) -> list[Any]:
    values: list[Any] = [resource]
    for step in steps:
        found: list[Any] = []
        for value in values:
            item = value.get(step) if isinstance(value, dict) else None
            if isinstance(item, list):
                found.extend(item)
            elif item is not None:
                found.append(item)
        values = found
    return values


def _applies(bases: list[str], resource_type: str) -> bool:
    return resource_type in bases or "Resource" in bases or "DomainResource" in bases
