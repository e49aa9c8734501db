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
SOFTWARE_VERSION = "0.1.0"


@router.get("/metadata")
async def metadata(request: Request, settings: SettingsDep) -> Response:
    return fhir_response(200, capability_statement(settings.fhir_base))


@router.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def metadata_is_read_only() -> Response:
    raise outcome.method_not_allowed("The CapabilityStatement is read-only: use GET")


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
    raise outcome.method_not_allowed("OperationDefinitions are read-only: use GET")


@cache
def capability_statement(base: str) -> dict[str, Any]:
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
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": True,
        "conditionalDelete": "single",
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
