"""The resource types Créneau serves, and validation of incoming resources.

`fhir.resources` (R4B) checks structure and datatypes; it does not check required value-set
bindings, the id format or that a resource is what the URL says. Those checks are added here,
and, given the request's `Conformity`, the profiles the resource claims.
Reference resolution needs the store and lives with the writers (`server.store.references`).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from server.fhir import outcome
from server.fhir.invariants import invariant_issues
from server.fhir.outcome import Issue

if TYPE_CHECKING:
    from server.fhir.conformity import Conformity

SERVED_TYPES: tuple[str, ...] = (
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "HealthcareService",
    "Patient",
    "Schedule",
    "Slot",
    "Appointment",
    "AppointmentResponse",
    "Medication",
    "SupplyRequest",
    "SupplyDelivery",
    "Immunization",
    "Endpoint",
    "AuditEvent",
    "Provenance",
    "Communication",
    "Basic",  # owner grants (server.auth.grants)
)
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def is_served(resource_type: str) -> bool:
    return resource_type in SERVED_TYPES


def check_type(resource_type: str) -> None:
    if not is_served(resource_type):
        raise outcome.not_found(f"Resource type {resource_type!r} is not served here")


def check_id(resource_id: str) -> None:
    if not ID_PATTERN.fullmatch(resource_id):
        raise outcome.bad_request(f"{resource_id[:80]!r} is not a valid FHIR id", "value")


def validate(
    body: Any, resource_type: str | None = None, conformity: Conformity | None = None
) -> dict[str, Any]:
    """`body` if it is a valid resource (of `resource_type` when given) and meets the profiles
    it claims (with `conformity`), else 422 or 400."""
    if not isinstance(body, dict):
        raise outcome.bad_request("The body must be a JSON object", "structure")
    actual = body.get("resourceType")
    if not isinstance(actual, str):
        raise outcome.invalid_one("resourceType is missing", "resourceType", "required")
    if resource_type is not None and actual != resource_type:
        raise outcome.bad_request(
            f"resourceType {actual!r} does not match the URL's type {resource_type!r}"
        )
    if not is_served(actual):
        raise outcome.invalid_one(f"Resource type {actual!r} is not served", "resourceType")
    if "id" in body and (not isinstance(body["id"], str) or not ID_PATTERN.fullmatch(body["id"])):
        raise outcome.invalid_one("id is not a valid FHIR id", f"{actual}.id", "value")
    try:
        model = get_fhir_model_class(actual).model_validate(body)
    except ValidationError as exc:
        raise outcome.invalid([_issue(actual, error) for error in exc.errors()]) from None
    issues = json_type_issues(
        body, orjson.loads(model.model_dump_json(by_alias=True, exclude_none=True)), actual
    )
    issues += binding_issues(body)
    issues += invariant_issues(body)
    if issues:
        raise outcome.invalid(issues)
    if conformity is not None:
        conformity.check(body)
    return body


def _issue(resource_type: str, error: Any) -> Issue:
    path = resource_type
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return Issue("invalid", message, expression=(path,))


def _json_kind(value: Any) -> str:
    return {bool: "boolean", int: "number", float: "number", str: "string"}.get(type(value), "")


def json_type_issues(body: Any, parsed: Any, where: str) -> list[Issue]:
    """Primitives whose JSON type the model had to coerce (`"active": "yes"`, `"priority": "5"`)
    and properties set to null: pydantic accepts them, the FHIR JSON format does not, and we
    store the body as sent."""
    if isinstance(body, dict) and isinstance(parsed, dict):
        issues: list[Issue] = []
        for key, value in body.items():
            if value is None:
                issues.append(
                    Issue(
                        "invalid",
                        "A property may not be null in FHIR JSON",
                        expression=(f"{where}.{key}",),
                    )
                )
            elif key in parsed:
                issues += json_type_issues(value, parsed[key], f"{where}.{key}")
        return issues
    if isinstance(body, list) and isinstance(parsed, list):
        return [
            issue
            for index, (value, model) in enumerate(zip(body, parsed, strict=False))
            for issue in json_type_issues(value, model, f"{where}[{index}]")
        ]
    expected, given = _json_kind(parsed), _json_kind(body)
    if expected and given and expected != given:
        return [
            Issue(
                "invalid", f"A JSON {expected} is expected here, not a {given}", expression=(where,)
            )
        ]
    return []


@cache
def required_bindings() -> dict[str, frozenset[str]]:
    """Element path → allowed codes, for the required bindings of the served types."""
    data = json.loads((PROFILES / "required-bindings.json").read_text())
    return {
        path: frozenset(entry["codes"])
        for path, entry in data.items()
        if entry["types"] in (["code"], ["Coding"], ["CodeableConcept"])
    }


def binding_issues(body: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    resource_type = body["resourceType"]
    for path, codes in required_bindings().items():
        element_type, _, rest = path.partition(".")
        if element_type != resource_type:
            continue
        for where, value in _walk(body, rest.split("."), resource_type):
            for code in _codes(value):
                if code not in codes:
                    issues.append(
                        Issue(
                            "code-invalid",
                            f"{code!r} is not in the required value set for {path}",
                            expression=(where,),
                        )
                    )
    return issues


def _walk(node: Any, steps: list[str], where: str) -> list[tuple[str, Any]]:
    if not steps:
        return [(where, node)]
    if isinstance(node, list):
        found = []
        for index, item in enumerate(node):
            found += _walk(item, steps, f"{where}[{index}]")
        return found
    if not isinstance(node, dict) or steps[0] not in node:
        return []
    return _walk(node[steps[0]], steps[1:], f"{where}.{steps[0]}")


def _codes(value: Any) -> list[str]:
    """Codes carried by a code, a list of codes, a Coding or a CodeableConcept."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [code for item in value for code in _codes(item)]
    if isinstance(value, dict):
        if "coding" in value:
            return [c["code"] for c in value["coding"] if "code" in c]
        if "code" in value:
            return [value["code"]]
    return []
