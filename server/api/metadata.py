"""GET /fhir/metadata: the CapabilityStatement, generated from what is really implemented —
the served types, the interactions the routes answer, every search parameter the registry
loaded from the official definitions and the operations on each type.

GET /fhir/OperationDefinition/{id}: the definitions of those operations, read-only (they are
files under `profiles/operations/`, not stored resources)."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, Request
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from starlette.responses import Response

from server.api.deps import SettingsDep
from server.api.negotiation import check_accept, fhir_response
from server.fhir import operations, outcome
from server.fhir.resources import SERVED_TYPES
from server.fhir.search import MODIFIERS
from server.fhir.searchparams import registry

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)])
INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
APPEND_ONLY = ("AuditEvent", "Provenance")  # never updated nor deleted through the API
SOFTWARE_VERSION = "0.1.0"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


@router.get("/metadata")
async def metadata(request: Request, settings: SettingsDep) -> Response:
    token_endpoint = request.app.state.authority.token_endpoint
    statement = capability_statement(
        settings.fhir_base, token_endpoint, settings.sandbox, bool(settings.cors_origins)
    )
    return fhir_response(200, statement)


@router.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def metadata_is_read_only() -> Response:
    raise outcome.method_not_allowed("The CapabilityStatement is read-only: use GET", "GET, HEAD")


@router.get("/OperationDefinition/{definition_id}")
async def operation_definition(definition_id: str) -> Response:
    definition = operations.get(definition_id)
    if definition is None:
        raise outcome.not_found(f"OperationDefinition/{definition_id[:80]} is not known here")
    return fhir_response(200, definition)


@router.api_route(
    "/OperationDefinition/{definition_id}",
    methods=["POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def operation_definition_is_read_only(definition_id: str) -> Response:
    raise outcome.method_not_allowed("OperationDefinitions are read-only: use GET", "GET, HEAD")


def _security(token_endpoint: str, sandbox: bool, cors: bool) -> dict[str, Any]:
    """`rest.security`: SMART Backend Services and its token endpoint, or the sandbox."""
    if sandbox:
        description = (
            "SANDBOX: authorization is OFF. Every request acts as the admin client 'sandbox'; "
            "never run so with real data."
        )
    else:
        description = (
            "SMART Backend Services: a bearer access token from the token endpoint "
            "(client_credentials, private_key_jwt or client secret), system/ scopes, and the "
            "owners' grants (see docs/security.md)."
        )
    security: dict[str, Any] = {"cors": cors, "description": description}
    if not sandbox:
        security["service"] = [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}]}]
        security["extension"] = [_oauth_uris(token_endpoint)]
    return security


def _oauth_uris(token_endpoint: str) -> dict[str, Any]:
    return {"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_endpoint}]}


@cache
def capability_statement(
    base: str, token_endpoint: str, sandbox: bool = False, cors: bool = False
) -> dict[str, Any]:
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Créneau",
        "kind": "instance",
        "software": {"name": "Créneau", "version": SOFTWARE_VERSION},
        "implementation": {"description": "Créneau FHIR scheduling server", "url": base},
        "fhirVersion": "4.3.0",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "security": _security(token_endpoint, sandbox, cors),
                "resource": [_resource(t) for t in SERVED_TYPES],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
            }
        ],
    }
    CapabilityStatement.model_validate(statement)
    return statement


def _resource(resource_type: str) -> dict[str, Any]:
    params = registry().of(resource_type)
    reverse = sorted(
        f"{other}:{code}"
        for other in SERVED_TYPES
        for code, p in registry().of(other).items()
        if p.type == "reference" and (not p.targets or resource_type in p.targets)
    )
    resource: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in _interactions(resource_type)],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": resource_type not in APPEND_ONLY,
        "conditionalDelete": "not-supported" if resource_type in APPEND_ONLY else "single",
        "searchInclude": sorted(
            f"{resource_type}:{code}" for code, p in params.items() if p.type == "reference"
        ),
        "searchRevInclude": reverse,
        "searchParam": [
            {
                "name": code,
                "definition": p.url,
                "type": p.type,
                "documentation": "Modifiers: " + ", ".join(sorted(MODIFIERS[p.type])),
            }
            for code, p in sorted(params.items())
        ],
    }
    declared = operations.for_type(resource_type)
    if declared:
        resource["operation"] = [{"name": d["code"], "definition": d["url"]} for d in declared]
    return resource


def _interactions(resource_type: str) -> tuple[str, ...]:
    if resource_type in APPEND_ONLY:
        return tuple(c for c in INTERACTIONS if c not in ("update", "patch", "delete"))
    return INTERACTIONS
