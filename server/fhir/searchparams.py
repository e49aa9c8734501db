"""Search parameters, read from the official FHIR SearchParameter definitions.

`profiles/search-parameters.json` holds the official definitions for the served types (see
`profiles/derive.py`). Each definition gives a code, a type and a FHIRPath expression that may
cover several base types; here each is split per served type and compiled once with fhirpathpy.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, cast

from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.models import models

from server.fhir import conformance
from server.fhir.resources import PROFILES, SERVED_TYPES

SUPPORTED_TYPES = frozenset({"token", "string", "date", "reference", "number", "quantity", "uri"})
# `resolve()` needs a store; for indexing, a reference's declared type is what it resolves to.
RESOLVE_IS = re.compile(r"\.where\(resolve\(\) is (\w+)\)")
FHIRPATH_MODEL = models["r4"]
log = logging.getLogger(__name__)


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
    # An IG may start at the resource's first element (`serviceType.extension…`), as FHIRPath
    # allows: the context is the resource.
    parts = [f"{resource_type}.{p}" if p[:1].islower() else p for p in parts]
    own = [p for p in parts if p.startswith((f"{resource_type}.", f"({resource_type}."))]
    if not own:
        return None
    return RESOLVE_IS.sub(r".where(reference.startsWith('\1/'))", " | ".join(own))


@cache
def registry() -> Registry:
    """The official definitions, then ours (`profiles/SearchParameter-*.json`), then those of
    the built-in IG packages (`conformance.DEFAULT_PACKAGES`: the SAS IG's `Slot`
    `service-type-reference`). The store indexes every one of them at write, so the set is fixed
    by the code, not by settings: a package an operator adds is served, not searched. An IG
    parameter whose code a served type has already keeps the official one (logged): the SAS IG's
    `slot-sp-start` restates the core Slot `start`, only narrowing its comparators to ge and le."""
    bundle = json.loads((PROFILES / "search-parameters.json").read_text())
    definitions = [entry["resource"] for entry in bundle["entry"]]
    definitions += [
        json.loads(path.read_text()) for path in sorted(PROFILES.glob("SearchParameter-*.json"))
    ]
    by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in SERVED_TYPES}
    for definition in definitions:
        _add(by_type, definition)
    for definition in conformance.load().from_packages("SearchParameter"):
        _add(by_type, definition, keep=True)
    return Registry(by_type)


def _add(
    by_type: dict[str, dict[str, SearchParam]], definition: dict[str, Any], keep: bool = False
) -> None:
    """Register `definition` on each served type it applies to; `keep`: not over one there."""
    if definition["type"] not in SUPPORTED_TYPES or "expression" not in definition:
        return
    for resource_type in SERVED_TYPES:
        if not _applies(definition["base"], resource_type):
            continue
        expression = expression_for(definition["expression"], resource_type, definition["base"])
        if expression is None:
            continue
        there = by_type[resource_type].get(definition["code"])
        if keep and there is not None:
            log.info(
                "%s keeps %s for %r, not %s",
                resource_type,
                there.url,
                there.code,
                definition["url"],
            )
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


# Shapes the writes meet on every booking, walked directly too (50 to 100 times faster than the
# engine): references of one type (`resolve() is T`, rewritten above), elements whose field has
# one value (`telecom.where(system='phone')`), one extension's value, one type of a choice
# element, and unions of these.
OF_TYPE = re.compile(r"^(?P<path>[\w.]+)\.where\(reference\.startsWith\('(?P<prefix>\w+/)'\)\)$")
FIELD_IS = re.compile(r"^(?P<path>[\w.]+)\.where\((?P<field>\w+)='(?P<value>[\w.:/-]+)'\)$")
EXTENSION_VALUE = re.compile(r"^(?P<path>[\w.]+)\.extension\.where\(url='(?P<url>[^']+)'\)\.value$")
CHOICE = re.compile(r"^\((?P<path>[\w.]+) as (?P<type>[a-zA-Z]+)\)$")


def compile_expression(expression: str, resource_type: str) -> Callable[..., list[Any]]:
    """A plain path (`Slot.schedule`, `Patient.address.city`) is walked directly, several times
    faster than the FHIRPath engine on the write hot path, and so are the shapes above; anything
    else goes to fhirpathpy."""
    parts = expression.split(" | ")
    walkers = [_walker(part.strip(), resource_type) for part in parts]
    if all(walkers):
        if len(walkers) == 1:
            return cast(Callable[..., list[Any]], walkers[0])
        return partial(_union, tuple(cast(list[Callable[..., list[Any]]], walkers)))
    return cast(Callable[..., list[Any]], compile_fhirpath(expression, model=FHIRPATH_MODEL))


def _walker(expression: str, resource_type: str) -> Callable[..., list[Any]] | None:
    """A direct walk for one of the shapes, or None."""
    if (typed := OF_TYPE.match(expression)) and (steps := _steps(typed["path"], resource_type)):
        return partial(_references_to, steps, typed["prefix"])
    if (equal := FIELD_IS.match(expression)) and (steps := _steps(equal["path"], resource_type)):
        return partial(_where_field, steps, equal["field"], equal["value"])
    found = EXTENSION_VALUE.match(expression)
    if found and (steps := _steps(f"{found['path']}.extension", resource_type)):
        return partial(_extension_values, steps, found["url"])
    choice = CHOICE.match(expression)
    if choice:
        kind = choice["type"]
        path = choice["path"] + kind[0].upper() + kind[1:]
        if steps := _steps(path, resource_type):
            return partial(_walk, steps)
    if steps := _steps(expression, resource_type):
        return partial(_walk, steps)
    return None


def _union(walkers: tuple[Callable[..., list[Any]], ...], resource: dict[str, Any]) -> list[Any]:
    """FHIRPath `|`: the values of each, in order, each once."""
    found: list[Any] = []
    for walker in walkers:
        found += [value for value in walker(resource) if value not in found]
    return found


def _where_field(
    steps: tuple[str, ...], name: str, wanted: str, resource: dict[str, Any]
) -> list[Any]:
    return [v for v in _walk(steps, resource) if isinstance(v, dict) and v.get(name) == wanted]


def _steps(path: str, resource_type: str) -> tuple[str, ...] | None:
    """The element names of a plain path from the resource (`Slot.schedule`), or None."""
    steps = path.split(".")
    fields = get_fhir_model_class(resource_type).model_fields
    if (
        len(steps) > 1
        and steps[0] == resource_type
        and all(map(str.isidentifier, steps[1:]))
        and steps[1] in {info.alias or name for name, info in fields.items()}
    ):
        return tuple(steps[1:])
    return None


def _references_to(steps: tuple[str, ...], prefix: str, resource: dict[str, Any]) -> list[Any]:
    return [
        value
        for value in _walk(steps, resource)
        if isinstance(value, dict) and str(value.get("reference", "")).startswith(prefix)
    ]


def _extension_values(steps: tuple[str, ...], url: str, resource: dict[str, Any]) -> list[Any]:
    return [
        value
        for extension in _walk(steps, resource)
        if isinstance(extension, dict) and extension.get("url") == url
        for key, value in extension.items()
        if key.startswith("value")
    ]


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
