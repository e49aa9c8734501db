"""`[type]/$validate` and `[type]/[id]/$validate`: what a write would say of a resource, with
nothing written (`profiles/operations/validate.json`).

The answer is the validation: 200 with an OperationOutcome of every issue, errors included, as
FHIR's `$validate` is defined; 400 only for a body that is no resource to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from server.api.deps import Fhir, SettingsDep
from server.api.interactions import Interactions
from server.api.negotiation import check_accept, fhir_response, read_json
from server.fhir import outcome, resources
from server.fhir.conformity import Conformity, claimed
from server.fhir.outcome import FhirError, Issue

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)])
MODES = ("create", "update")
ALL_OK = Issue("informational", "All OK", severity="information")


@dataclass(frozen=True)
class Asked:
    resource: dict[str, Any] | None
    profile: str | None


@router.post("/{resource_type}/$validate")
async def validate_type(
    resource_type: str, request: Request, fhir: Fhir, settings: SettingsDep
) -> Response:
    resources.check_type(resource_type)
    asked = _asked(await read_json(request, settings.max_body_bytes), request)
    if asked.resource is None:
        raise outcome.bad_request("Give the resource to validate: the body, or `resource`")
    return _answer(asked.resource, resource_type, asked.profile, fhir)


@router.api_route("/{resource_type}/{resource_id}/$validate", methods=["GET", "POST"])
async def validate_instance(
    resource_type: str, resource_id: str, request: Request, fhir: Fhir, settings: SettingsDep
) -> Response:
    stored = (await fhir.read(resource_type, resource_id)).body or {}
    body = None
    if request.method == "POST" and request.headers.get("content-length", "0") != "0":
        body = await read_json(request, settings.max_body_bytes)
    asked = _asked(body, request)
    resource = asked.resource if asked.resource is not None else stored
    if resource.get("id", resource_id) != resource_id:
        raise outcome.bad_request(f"The resource's id is not {resource_id}, the URL's")
    return _answer(resource, resource_type, asked.profile, fhir)


def _asked(body: Any, request: Request) -> Asked:
    """The resource and profile asked: a Parameters (`resource`, `profile`, `mode`), or the
    resource itself as the body; `profile` also from the query string."""
    profile = request.query_params.get("profile")
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        if body is not None and not isinstance(body, dict):
            raise outcome.bad_request("The body must be a resource or a Parameters")
        return Asked(body, profile)
    found: dict[str, Any] = {}
    for parameter in body.get("parameter") or []:
        if isinstance(parameter, dict) and isinstance(parameter.get("name"), str):
            found[parameter["name"]] = parameter
    mode = found.get("mode", {}).get("valueCode")
    if mode is not None and mode not in MODES:
        raise outcome.bad_request(f"mode is one of {', '.join(MODES)} here, not {mode!r}")
    given = found.get("profile", {})
    profile = given.get("valueCanonical") or given.get("valueUri") or profile
    if profile is not None and not isinstance(profile, str):
        raise outcome.bad_request("profile is a canonical URL: valueCanonical or valueUri")
    resource = found.get("resource", {}).get("resource")
    return Asked(resource if isinstance(resource, dict) else None, profile)


def _answer(
    resource: dict[str, Any], resource_type: str, profile: str | None, fhir: Interactions
) -> Response:
    issues = _base_issues(resource, resource_type)
    lenient = fhir.conformity or Conformity(lambda _: None)
    if profile is not None:  # named: FHIR asks for an error if it cannot be checked
        checker = Conformity(lenient.resolve, strict=True)
        issues += checker.issues(resource, [profile])
    else:
        issues += lenient.issues(resource, claimed(resource))
    return fhir_response(200, outcome.operation_outcome(_distinct(issues) or [ALL_OK]))


def _base_issues(resource: dict[str, Any], resource_type: str) -> list[Issue]:
    """What a write's validation refuses (422); a body of another type stays a 400."""
    try:
        resources.validate(resource, resource_type)
    except FhirError as refused:
        if refused.status != 422:
            raise
        return list(refused.issues)
    return []


def _distinct(issues: list[Issue]) -> list[Issue]:
    return list(dict.fromkeys(issues))
