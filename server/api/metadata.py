"""GET /fhir/metadata: the CapabilityStatement, generated from what is really implemented —
the served types, the interactions the routes answer, every search parameter the registry
loaded (the official definitions, ours, the IG packages'), the operations on each type, the
loaded profiles of each type, the conformance resources served read-only
(`server.api.conformance`), the IGs loaded and the IG requirements it meets (`instantiates`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, Request
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from starlette.responses import Response

from server.api import conformance as served_conformance
from server.api.deps import SettingsDep
from server.api.negotiation import check_accept, fhir_response
from server.fhir import conformance, operations, outcome
from server.fhir.conformance import Conformance
from server.fhir.resources import SERVED_TYPES
from server.fhir.search import MODIFIERS
from server.fhir.searchparams import expression_for, registry

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
        settings.fhir_base,
        token_endpoint,
        request.app.state.conformance,
        settings.sandbox,
        bool(settings.cors_origins),
    )
    return fhir_response(200, statement)


@router.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def metadata_is_read_only() -> Response:
    raise outcome.method_not_allowed("The CapabilityStatement is read-only: use GET", "GET, HEAD")


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
    base: str, token_endpoint: str, loaded: Conformance, sandbox: bool = False, cors: bool = False
) -> dict[str, Any]:
    """`loaded`: the conformance resources of this server (`app.state.conformance`)."""
    statement: dict[str, Any] = {
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
                "resource": [_resource(t, loaded) for t in SERVED_TYPES]
                + [served_conformance.capability(t) for t in conformance.SERVED],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
            }
        ],
    }
    guides = [p["guide"] for p in loaded.packages() if p["guide"]]
    if guides:
        statement["implementationGuide"] = guides
    instantiated = instantiates(statement, loaded)
    if instantiated:
        statement["instantiates"] = instantiated
    CapabilityStatement.model_validate(statement)
    return statement


def _resource(resource_type: str, loaded: Conformance) -> dict[str, Any]:
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
    profiles = loaded.profiles_for(resource_type)
    if profiles:
        resource["supportedProfile"] = profiles
    declared = operations.for_type(resource_type)
    if declared:
        resource["operation"] = [{"name": d["code"], "definition": d["url"]} for d in declared]
    return resource


def _interactions(resource_type: str) -> tuple[str, ...]:
    if resource_type in APPEND_ONLY:
        return tuple(c for c in INTERACTIONS if c not in ("update", "patch", "delete"))
    return INTERACTIONS


EXPECTATION = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation"
OPTIONAL = ("SHOULD", "MAY", "SHOULD-NOT")
PARSER_PARAMS = ("_has",)  # handled by the search parser itself, no SearchParameter behind it


def instantiates(statement: dict[str, Any], loaded: Conformance) -> list[str]:
    """The canonicals of the loaded requirements CapabilityStatements (an IG's) whose server
    side `statement` meets: each rest interaction they require is ours, and for each resource
    they name, the type is served with their profiles among its `supportedProfile`, and each
    interaction, search parameter, `_include`, `_revinclude` and operation they require is in
    `statement`. An item marked SHOULD or MAY is not required. A search parameter is met by the
    same definition url, or by one of ours with the same code, type and expression: the SAS
    IG's `slot-sp-start` restates core Slot `start`. Of the SAS IG 1.1.0 that is the five
    agenda-manager statements (SAS-GestionnaireAgenda-CPTS, -PsIndiv, -SOS, -RDVSOS,
    -RDVpsindiv) and SAS-GestionnaireStructure; the SAS-Consommateur ones are for clients."""
    ours = statement["rest"][0]
    met = []
    for required in loaded.of_type("CapabilityStatement"):
        servers = [r for r in required.get("rest", []) if r.get("mode") == "server"]
        kind = required.get("kind")
        if kind == "requirements" and servers and all(_meets(ours, r, loaded) for r in servers):
            met.append(required["url"])
    return met


def _meets(ours: dict[str, Any], required: dict[str, Any], loaded: Conformance) -> bool:
    codes = {i["code"] for i in ours["interaction"]}
    by_type = {r["type"]: r for r in ours["resource"]}
    return all(i["code"] in codes for i in _shall(required.get("interaction", []))) and all(
        r["type"] in by_type and _meets_resource(by_type, r, loaded)
        for r in _shall(required.get("resource", []))
    )


def _meets_resource(
    by_type: dict[str, dict[str, Any]], required: dict[str, Any], loaded: Conformance
) -> bool:
    ours = by_type[required["type"]]
    codes = {i["code"] for i in ours["interaction"]}
    operations_met = {o["definition"] for o in ours.get("operation", [])}
    profiles = [required["profile"]] if "profile" in required else []
    includes = required.get("searchInclude", []) + required.get("searchRevInclude", [])
    return (
        all(
            p in ours.get("supportedProfile", [])
            for p in profiles + required.get("supportedProfile", [])
        )
        and all(i["code"] in codes for i in _shall(required.get("interaction", [])))
        and all(
            _param_met(ours["type"], p, loaded) for p in _shall(required.get("searchParam", []))
        )
        and all(_include_met(by_type, text) for text in includes)
        and all(o["definition"] in operations_met for o in _shall(required.get("operation", [])))
    )


def _shall(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items a requirements statement does require (no SHOULD or MAY expectation)."""
    return [
        item
        for item in items
        if not any(
            e.get("url") == EXPECTATION and e.get("valueCode") in OPTIONAL
            for e in item.get("extension", [])
        )
    ]


def _param_met(resource_type: str, required: dict[str, Any], loaded: Conformance) -> bool:
    if required.get("name") in PARSER_PARAMS:
        return True
    url = required.get("definition", "")
    if any(p.url == url for p in registry().of(resource_type).values()):
        return True
    definition = loaded.by_url(url) if url else None
    if definition is None or definition["resourceType"] != "SearchParameter":
        return False
    mine = registry().get(resource_type, definition.get("code", ""))
    return (
        mine is not None
        and mine.type == definition.get("type")
        and mine.expression
        == expression_for(definition.get("expression", ""), resource_type, definition["base"])
    )


def _include_met(by_type: dict[str, dict[str, Any]], text: str) -> bool:
    """`Source:code` or `Source:code:Target`, as our `searchInclude` of Source has it."""
    source, _, rest = text.partition(":")
    code, _, target = rest.partition(":")
    param = registry().get(source, code)
    return (
        f"{source}:{code}" in by_type.get(source, {}).get("searchInclude", [])
        and param is not None
        and (not target or not param.targets or target in param.targets)
    )
