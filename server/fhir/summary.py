"""`_summary` and `_elements`: the parts of a resource a client asked to see.

Summary and mandatory flags come from the `fhir.resources` models, which carry the official
element definitions' `isSummary` and `min` for every field.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
ALWAYS = ("resourceType", "id", "meta")


@cache
def _flags(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary element names, mandatory element names), with choice-type names expanded."""
    summary, mandatory = set(), set()
    for name, info in get_fhir_model_class(resource_type).model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        alias = info.alias or name
        if extra.get("summary_element_property"):
            summary.add(alias)
        if extra.get("element_required"):
            mandatory.add(alias)
    return frozenset(summary), frozenset(mandatory)


def apply(resource: dict[str, Any], summary: str | None, elements: list[str]) -> dict[str, Any]:
    if summary in (None, "false") and not elements:
        return resource
    if summary == "data":
        kept = {k: v for k, v in resource.items() if k != "text"}
    elif summary == "text":
        _, mandatory = _flags(resource["resourceType"])
        kept = {k: v for k, v in resource.items() if k in (*ALWAYS, "text") or k in mandatory}
    elif summary == "true":
        names, _ = _flags(resource["resourceType"])
        kept = {k: v for k, v in resource.items() if k in ALWAYS or k in names}
    else:
        _, mandatory = _flags(resource["resourceType"])
        wanted = set(elements) | mandatory
        kept = {
            k: v
            for k, v in resource.items()
            if k in ALWAYS or k in wanted or k.lstrip("_") in wanted
        }
    return _tag_subsetted(kept)


def _tag_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta", {}))
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    return {**resource, "meta": meta}
