"""What each route of the API answers, for `/openapi.json` (`server.api.openapi`): its statuses,
each with its body, headers and what it means.

Read from the code, not hoped for: the REST routes (`server.api.rest`) and the interactions and
rules under them (`server.api.interactions`, `server.store.writes`, `server.scheduling.rules`);
for an `$operation`, what every one meets (`server.api.inputs`) and what its handler adds
(`OWN`). Every error of the FHIR API and of the client API is an OperationOutcome
(`server.api.errors`); the token endpoint answers OAuth2's own JSON, the health checks theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from server.fhir.resources import SERVED_TYPES

FHIR_JSON = "application/fhir+json"
JSON = "application/json"
HEALTH_JSON = "application/health+json"
COMPONENTS = "#/components/schemas/"
OUTLINED = ("Bundle", "CapabilityStatement", "OperationOutcome", "Parameters")

ERRORS = {
    400: "Bad input: malformed JSON or syntax, an invalid id, search or operation input, or "
    "an unknown parameter under `Prefer: handling=strict`",
    401: "No valid access token (authorization on; never in the sandbox): "
    "`WWW-Authenticate` says what was wrong",
    403: "The token's scopes, or the schedules' owners (their grants), do not allow it",
    404: "Not found, or not visible to this client (the same answer: nothing is confirmed); "
    "or a resource type this server does not serve",
    405: "Not allowed here (AuditEvent and Provenance are append-only): `Allow` lists the methods",
    406: "Only JSON is served: `Accept` or `_format` asked for another format (XML)",
    409: "Conflict: a concurrent change got there first (retry), or a rule refuses it "
    "(slot taken, no dose left, a duplicate national identifier, an appointment on a slot)",
    410: "Deleted",
    412: "Precondition failed: `If-Match` is not the current version, or the condition "
    "matches several resources",
    413: "The body is larger than the server takes (`CRENEAU_MAX_BODY_BYTES`)",
    415: "The body's Content-Type is not one this route reads",
    422: "Unprocessable: a resource that fails validation or a scheduling rule, or work "
    "larger than a limit allows",
    429: "Throttled: the app's bookings of the day in an owner's schedules (the grant's quota), "
    "or its live holds (`holds_per_client`), are used up",
    503: "Past the request's time budget (`CRENEAU_LIMIT_REQUEST_SECONDS`: its work rolled back, "
    "`Retry-After` given) or the store is busy: retry",
}
HEADERS = {
    "ETag": 'The version, `W/"n"`',
    "Last-Modified": "When the version was written",
    "Location": "The version written: `[base]/Type/id/_history/n`",
    "WWW-Authenticate": "The Bearer challenge",
    "Allow": "The methods this resource takes",
    "Retry-After": "Seconds to wait before trying again",
    "Content-Location": "Where to poll the job's status: `[base]/$export-status/{job}`",
}
ERROR_HEADERS = {
    401: ("WWW-Authenticate",),
    405: ("Allow",),
    429: ("Retry-After",),
    503: ("Retry-After",),
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"{COMPONENTS}{name}"}


def resource_of(resource_type: str) -> dict[str, Any]:
    """A resource of one type: its outline when it has one, else a Resource of that type."""
    if resource_type in OUTLINED:
        return ref(resource_type)
    fixed = {"properties": {"resourceType": {"const": resource_type}}}
    return {"allOf": [ref("Resource"), fixed]}


def bundle_of(*types: str) -> dict[str, Any]:
    return {"allOf": [ref("Bundle"), {"properties": {"type": {"enum": list(types)}}}]}


@dataclass(frozen=True)
class Answer:
    """One status a route answers with: what it means, its body's schema (None: no body)."""

    description: str
    schema: dict[str, Any] | None = None
    media: str = FHIR_JSON
    headers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        response: dict[str, Any] = {"description": self.description}
        if self.headers:
            response["headers"] = {
                name: {"description": HEADERS[name], "schema": {"type": "string"}}
                for name in self.headers
            }
        if self.schema is not None:
            response["content"] = {self.media: {"schema": self.schema}}
        return response


@dataclass(frozen=True)
class Kind:
    """What one route answers: its successes (and bodies other than OperationOutcomes), then
    the statuses of its errors, each an OperationOutcome."""

    answers: dict[int, Answer]
    errors: tuple[int, ...] = ()

    def responses(self) -> dict[str, Any]:
        every = dict(self.answers)
        for status in self.errors:
            every.setdefault(
                status,
                Answer(
                    ERRORS[status], ref("OperationOutcome"), headers=ERROR_HEADERS.get(status, ())
                ),
            )
        return {str(status): every[status].to_json() for status in sorted(every)}


AUTHED = (400, 401, 403, 406, 503)  # X-On-Behalf-Of, the token and its scopes, Accept, budget
WRITES = (404, 409, 412, 413, 415, 422, 429)  # what a write of a resource may meet
VERSIONED = ("ETag", "Last-Modified")
CREATED = (*VERSIONED, "Location")
SEARCHSET = bundle_of("searchset")
HISTORY = bundle_of("history")
RESOURCE = ref("Resource")
SMART = Kind({200: Answer("The SMART configuration", ref("SmartConfiguration"), JSON)})


def _ok(description: str, schema: dict[str, Any], errors: tuple[int, ...], *headers: str) -> Kind:
    """A route with one success, 200 with a FHIR body."""
    return Kind({200: Answer(description, schema, headers=headers)}, errors)


def _client(description: str) -> Kind:
    return Kind({200: Answer(description, ref("Client"), JSON)}, (401, 403, 404, 503))


ROUTES: dict[str, Kind] = {
    "GET /health": Kind({200: Answer("The process answers", ref("Health"), HEALTH_JSON)}),
    "GET /health/ready": Kind(
        {
            200: Answer("The store answers too", ref("Health"), HEALTH_JSON),
            503: Answer("The store does not answer", ref("Health"), HEALTH_JSON),
        }
    ),
    "POST /auth/token": Kind(
        {
            200: Answer("An access token (RFC 6749 §5.1)", ref("OAuthToken"), JSON),
            400: Answer("Refused (RFC 6749 §5.2)", ref("OAuthError"), JSON),
            401: Answer("Client authentication failed (HTTP Basic)", ref("OAuthError"), JSON),
        },
        (503,),
    ),
    "GET /auth/jwks": Kind(
        {200: Answer("The token-signing public keys", ref("Jwks"), JSON)}, (503,)
    ),
    "GET /.well-known/smart-configuration": SMART,
    "GET /fhir/.well-known/smart-configuration": SMART,
    "GET /auth/clients": Kind(
        {200: Answer("Every client", {"type": "array", "items": ref("Client")}, JSON)},
        (401, 403, 503),
    ),
    "POST /auth/clients": Kind(
        {201: Answer("The client, and its secret if one was asked for", ref("Client"), JSON)},
        (400, 401, 403, 503),
    ),
    "POST /auth/clients/{client_id}/disable": _client("The client, disabled"),
    "POST /auth/clients/{client_id}/rotate-secret": _client("The client and its new secret"),
    "POST /federation/sources": Kind(
        {201: Answer("The source registered", {"type": "object"}, JSON)}, (400, 401, 403, 409, 503)
    ),
    "GET /federation/sources": Kind(
        {200: Answer("Every source and its last poll", {"type": "array"}, JSON)}, (401, 403, 503)
    ),
    "GET /federation/sources/{name}": Kind(
        {200: Answer("The source and its last poll", {"type": "object"}, JSON)},
        (401, 403, 404, 503),
    ),
    "POST /federation/sources/{name}/poll": Kind(
        {200: Answer("The poll's outcome", {"type": "object"}, JSON)}, (401, 403, 404, 503)
    ),
    "DELETE /federation/sources/{name}": Kind(
        {200: Answer("The source removed", {"type": "object"}, JSON)}, (401, 403, 404, 503)
    ),
    "GET /sandbox": Kind(
        {200: Answer("The named scenarios (sandbox mode only)", {"type": "object"}, JSON)},
        (404,),
    ),
    "POST /sandbox/reset": Kind(
        {200: Answer("The store emptied, the scenario loaded: counts", {"type": "object"}, JSON)},
        (400, 404, 503),
    ),
    "GET /fhir/metadata": _ok("What this server implements", ref("CapabilityStatement"), (406,)),
    "POST /fhir": _ok(  # a transaction fails as its first failing entry
        "The results",
        bundle_of("transaction-response", "batch-response"),
        (*AUTHED, *WRITES, 405, 410),
    ),
    "GET /fhir/_history": _ok("Every version, newest first", HISTORY, AUTHED),
    "GET /fhir/{resource_type}": _ok("The matches", SEARCHSET, (*AUTHED, 404)),
    "POST /fhir/{resource_type}/_search": _ok("The matches", SEARCHSET, (*AUTHED, 404, 415)),
    "POST /fhir/{resource_type}": Kind(
        {
            201: Answer("Created", RESOURCE, headers=CREATED),
            200: Answer(
                "The one match of If-None-Exist (or of the URL's search): nothing created",
                RESOURCE,
                headers=CREATED,
            ),
        },
        (*AUTHED, *WRITES),
    ),
    "PUT /fhir/{resource_type}": Kind(
        {
            200: Answer("The one match, updated", RESOURCE, headers=VERSIONED),
            201: Answer("Created: nothing matched", RESOURCE, headers=CREATED),
        },
        (*AUTHED, *WRITES, 405),
    ),
    "DELETE /fhir/{resource_type}": Kind(
        {204: Answer("Deleted, or nothing matched")}, (*AUTHED, 404, 405, 409, 412)
    ),
    "GET /fhir/{resource_type}/_history": _ok("Every version of the type", HISTORY, (*AUTHED, 404)),
    "GET /fhir/{resource_type}/{resource_id}": Kind(
        {
            200: Answer("The current version", RESOURCE, headers=VERSIONED),
            304: Answer("Unchanged since If-None-Match or If-Modified-Since", headers=VERSIONED),
        },
        (*AUTHED, 404, 410),
    ),
    "PUT /fhir/{resource_type}/{resource_id}": Kind(
        {
            200: Answer("Updated", RESOURCE, headers=VERSIONED),
            201: Answer("Created under this id", RESOURCE, headers=CREATED),
        },
        (*AUTHED, *WRITES, 405),
    ),
    "PATCH /fhir/{resource_type}/{resource_id}": _ok(
        "Patched", RESOURCE, (*AUTHED, *WRITES, 405, 410), *VERSIONED
    ),
    "DELETE /fhir/{resource_type}/{resource_id}": Kind(
        {204: Answer("Deleted, or there was nothing to delete", headers=("ETag",))},
        (*AUTHED, 404, 405, 409, 412),
    ),
    "GET /fhir/{resource_type}/{resource_id}/_history": _ok(
        "Every version of the resource", HISTORY, (*AUTHED, 404)
    ),
    "GET /fhir/{resource_type}/{resource_id}/_history/{version_id}": _ok(
        "That version", RESOURCE, (*AUTHED, 404, 410), *VERSIONED
    ),
}


def of_route(path: str, method: str) -> Kind | None:
    """What a route that is not an `$operation` answers (None: not known here)."""
    return ROUTES.get(f"{method.upper()} {path}") or _read_only(path, method)


def _read_only(path: str, method: str) -> Kind | None:
    """A conformance type the server serves from its own files, read-only
    (`server.api.conformance`): public as `/fhir/metadata` is, no store, so no time budget."""
    resource_type, *rest = path.removeprefix("/fhir/").split("/")
    if not path.startswith("/fhir/") or resource_type in SERVED_TYPES:
        return None
    if not is_resource(resource_type):
        return None
    matches = Answer(f"The {resource_type} resources that match", SEARCHSET)
    if method == "get" and not rest:
        return Kind({200: matches}, (400, 406))
    if method == "post" and rest == ["_search"]:
        return Kind({200: matches}, (400, 406, 415))
    if method == "get" and len(rest) == 1:
        return Kind({200: Answer(f"The {resource_type}", resource_of(resource_type))}, (404, 406))
    return None


# An operation's successes (status → when, before its definition's description of its result)
# and the errors its own handler adds to those of every operation (`of_operation`).
OWN: dict[str, tuple[dict[int, str], tuple[int, ...]]] = {
    "appointment-find": ({200: ""}, ()),
    # a named Appointment missing or deleted, an invalid one or a rule refusing it, the app's
    # live holds (`holds_per_client`) or its quota of the day used up
    "appointment-hold": ({201: "Held"}, (404, 410, 422, 429)),
    "appointment-book": (
        {
            201: "Booked",
            200: "Booked before, by the same hold or with the same app identifier: unchanged",
        },
        (404, 410, 422, 429),
    ),
    "appointment-cancel": ({200: "Cancelled, or already so"}, (422,)),  # a final status
    "schedule-cancel-appointments": ({200: ""}, (422,)),  # more matches than a limit
    "schedule-generate-slots": ({200: ""}, (422,)),  # availability rules refused
    "doses": ({200: ""}, ()),
    "grant": ({201: "A new grant", 200: "The grant to this client, replaced"}, (404,)),
    "revoke": ({200: ""}, ()),
    "grants": ({200: ""}, ()),
    "export": ({202: "Accepted: poll the status URL given in Content-Location"}, (404,)),
    "validate": ({200: "The validation: every issue found, errors included, or All OK"}, ()),
}


def of_operation(definition: dict[str, Any], method: str) -> Kind | None:
    """What every operation meets (`inputs_of`: the scope, the instance it is called on, a
    Parameters body), what it changes (409), and what its own handler adds (None: an operation
    not in `OWN`)."""
    if definition["id"] not in OWN:
        return None
    success, own = OWN[definition["id"]]
    errors = {*AUTHED, *own}
    if definition["instance"]:
        errors |= {404, 410}
    if method == "post":
        errors |= {413, 415}
    if definition["affectsState"]:
        errors.add(409)
    outs = [p for p in definition["parameter"] if p["use"] == "out"]
    result = " ".join(f"`{p['name']}`: {p.get('documentation', '')}" for p in outs)
    returned = resource_of(_return_type(outs))
    answers = {
        status: Answer(". ".join(part for part in (when, result) if part), returned)
        for status, when in success.items()
    }
    return Kind(answers, tuple(sorted(errors)))


def _return_type(outs: list[dict[str, Any]]) -> str:
    """The resource an operation answers: its one `return` out-parameter's, if a resource,
    else a Parameters holding its out-parameters (as FHIR has it)."""
    if len(outs) == 1 and outs[0]["name"] == "return" and is_resource(outs[0].get("type", "")):
        return str(outs[0]["type"])
    return "Parameters"


def is_resource(fhir_type: str) -> bool:
    """A resource type, not a datatype (a Reference, a Period) nor a primitive."""
    if not fhir_type[:1].isupper():
        return False
    try:
        return issubclass(get_fhir_model_class(fhir_type), Resource)
    except ValueError:  # no FHIR type of that name
        return False
