"""SMART Backend Services over HTTP: POST /auth/token, GET /auth/jwks, the SMART configuration
(at the root and under /fhir), and the operator's API for clients under /auth/clients.

The token endpoint answers in OAuth2's own JSON (RFC 6749 §5), not OperationOutcomes; the client
API, being the server's own, answers errors as OperationOutcomes like the rest.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from server.auth import clients
from server.auth.caller import Caller, sandbox
from server.auth.oauth import ASSERTION_ALGORITHMS
from server.auth.tokens import Authority
from server.fhir import outcome

router = APIRouter(tags=["auth"])
FORM = "application/x-www-form-urlencoded"
MAX_FORM_BYTES = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SCOPES_SUPPORTED = [
    "system/*.cruds",
    "system/*.rs",
    "system/*.read",
    "system/*.write",
    "system/*.*",
    "system/Appointment.cruds",
    "system/Slot.rs",
    "system/Schedule.rs",
]
AUTH_METHODS_SUPPORTED = ["private_key_jwt", "client_secret_basic", "client_secret_post"]
CAPABILITIES = [
    "client-confidential-asymmetric",
    "client-confidential-symmetric",
    "permission-v1",
    "permission-v2",
]


def authority_of(request: Request) -> Authority:
    authority: Authority = request.app.state.authority
    return authority


async def _authority(request: Request) -> Authority:
    return authority_of(request)


AuthorityDep = Annotated[Authority, Depends(_authority)]


async def _admin(request: Request) -> Caller:
    """The operator's client (admin): 401 without a valid token, 403 for any other client."""
    if request.app.state.settings.sandbox:
        return sandbox()
    caller = await authority_of(request).caller(request.headers.get("authorization"))
    if not caller.admin:
        raise outcome.FhirError(
            403, [outcome.Issue("forbidden", "Only an admin client may manage clients")]
        )
    return caller


Admin = Annotated[Caller, Depends(_admin)]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _oauth_error(description: str) -> Response:
    body = {"error": "invalid_request", "error_description": description}
    return _json(400, body, NO_STORE)


@router.post("/auth/token")
async def token(request: Request, authority: AuthorityDep) -> Response:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        return _oauth_error(f"A token request is {FORM}")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _oauth_error("The token request is too large")
    try:
        form = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return _oauth_error("The token request's form is not readable")
    status, reply, headers = await authority.token_response(form, request.headers, str(request.url))
    headers.pop("Content-Type", None)
    return _json(status, reply, {**headers, **NO_STORE})


@router.get("/auth/jwks")
async def jwks(authority: AuthorityDep) -> Response:
    return _json(200, await authority.jwks(), {"Cache-Control": "public, max-age=60"})


@router.get("/.well-known/smart-configuration")
@router.get("/fhir/.well-known/smart-configuration")
async def smart_configuration(authority: AuthorityDep) -> Response:
    return _json(
        200,
        {
            "issuer": authority.issuer,
            "token_endpoint": authority.token_endpoint,
            "jwks_uri": authority.jwks_uri,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS_SUPPORTED,
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "scopes_supported": SCOPES_SUPPORTED,
            "capabilities": CAPABILITIES,
        },
    )


class ClientRequest(BaseModel):
    """What `creneau clients create` takes, as JSON."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    owners: list[str] = Field(default_factory=list, max_length=100)
    admin: bool = False
    scope: str | None = Field(default=None, max_length=2000)
    secret: bool = False
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = Field(default=None, max_length=2000)


@router.post("/auth/clients", status_code=201)
async def create_client(request: Request, wanted: ClientRequest, _: Admin) -> Response:
    client, secret = await clients.create(request.app.state.store, **wanted.model_dump())
    return _json(201, _shown(client, secret), NO_STORE)


@router.get("/auth/clients")
async def list_clients(request: Request, _: Admin) -> Response:
    return _json(200, [c.public() for c in await clients.list_all(request.app.state.store)])


@router.post("/auth/clients/{client_id}/disable")
async def disable_client(request: Request, client_id: str, _: Admin) -> Response:
    return _json(200, (await clients.disable(request.app.state.store, client_id)).public())


@router.post("/auth/clients/{client_id}/rotate-secret")
async def rotate_client_secret(request: Request, client_id: str, _: Admin) -> Response:
    client, secret = await clients.rotate_secret(request.app.state.store, client_id)
    return _json(200, _shown(client, secret), NO_STORE)


def _shown(client: clients.Client, secret: str | None) -> dict[str, Any]:
    shown = client.public()
    if secret is not None:
        shown["client_secret"] = secret
    return shown
