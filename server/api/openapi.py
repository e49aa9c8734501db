"""The OpenAPI document at `/openapi.json`: FastAPI's, with what a FHIR API reads and answers
by hand.

The FHIR routes read their bodies themselves (a resource, a Bundle, a Parameters, a JSON Patch,
a search form) and answer with plain `Response`s, so FastAPI sees neither. This adds, for each
path and method, the body it takes, the resource types `{resource_type}` may be, the inputs of
an `$operation` as its OperationDefinition names them (query parameters for a GET, a Parameters
body for a POST), and what it answers (`server.api.openapi_responses`). Clients and fuzzers
(`tests/api/test_fuzz.py`) then send what the server reads and check what it answers. The
outlines are in `components/schemas`; the full definitions stay the FHIR ones, in the
CapabilityStatement, the StructureDefinitions and the OperationDefinitions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.api import openapi_responses as answers
from server.api.openapi_responses import FHIR_JSON, is_resource, ref
from server.fhir import operations
from server.fhir.resources import SERVED_TYPES

STRING = {"type": "string"}
QUERY_TYPES = {"integer": "integer", "boolean": "boolean"}  # the others are read as text


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _fixed(resource_type: str, required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    return _object(["resourceType", *required], resourceType={"const": resource_type}, **properties)


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


ISSUE = _object(
    ["severity", "code"],
    severity={"enum": ["fatal", "error", "warning", "information"]},
    code=STRING,
    diagnostics=STRING,
    expression=_array(STRING),
)
ENTRY = {
    "type": "object",
    "properties": {
        "fullUrl": STRING,
        "resource": ref("Resource"),
        "search": {
            "type": "object",
            "properties": {"mode": {"enum": ["match", "include", "outcome"]}},
        },
        "response": _object(
            ["status"], status=STRING, location=STRING, etag=STRING, outcome=ref("Resource")
        ),
    },
}
REQUEST_ENTRY = {
    "type": "object",
    "properties": {
        "fullUrl": STRING,
        "resource": ref("Resource"),
        "request": _object(
            ["method", "url"],
            method={"enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]},
            url=STRING,
            ifMatch=STRING,
            ifNoneExist=STRING,
        ),
    },
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Resource": _object(
        ["resourceType"],
        resourceType=STRING,
        id=STRING,
        meta={"type": "object", "properties": {"versionId": STRING, "lastUpdated": STRING}},
    ),
    "OperationOutcome": _fixed(
        "OperationOutcome", ("issue",), issue={**_array(ISSUE), "minItems": 1}
    ),
    "Bundle": _fixed(
        "Bundle",
        ("type",),
        type={
            "enum": ["searchset", "history", "collection", "transaction-response", "batch-response"]
        },
        total={"type": "integer"},
        link=_array(_object(["relation", "url"], relation=STRING, url=STRING)),
        entry=_array(ENTRY),
    ),
    "Parameters": _fixed(
        "Parameters",
        parameter=_array(
            _object(
                ["name"], name=STRING, resource=ref("Resource"), part=_array({"type": "object"})
            )
        ),
    ),
    "CapabilityStatement": _fixed(
        "CapabilityStatement",
        ("status", "kind", "fhirVersion", "format"),
        status=STRING,
        kind=STRING,
        fhirVersion=STRING,
        format=_array(STRING),
        rest=_array({"type": "object"}),
    ),
    "BatchOrTransaction": _fixed(
        "Bundle", ("type",), type={"enum": ["transaction", "batch"]}, entry=_array(REQUEST_ENTRY)
    ),
    "JsonPatch": _array(
        _object(
            ["op", "path"],
            op={"enum": ["add", "remove", "replace", "move", "copy", "test"]},
            path=STRING,
            **{"from": STRING, "value": {}},
        )
    ),
    "SearchForm": {"type": "object", "additionalProperties": STRING},
    "TokenRequest": _object(
        ["grant_type"],
        grant_type=STRING,
        scope=STRING,
        client_id=STRING,
        client_secret=STRING,
        client_assertion_type=STRING,
        client_assertion=STRING,
    ),
    "OAuthToken": _object(
        ["access_token", "token_type", "expires_in"],
        access_token=STRING,
        token_type=STRING,
        expires_in={"type": "integer"},
        scope=STRING,
    ),
    "OAuthError": _object(["error"], error=STRING, error_description=STRING),
    "Jwks": _object(["keys"], keys=_array(_object(["kty"], kty=STRING, kid=STRING))),
    "SmartConfiguration": _object(
        ["token_endpoint"], issuer=STRING, token_endpoint=STRING, jwks_uri=STRING
    ),
    "Health": _object(["status"], status={"enum": ["pass", "fail"]}),
    "Client": _object(
        ["client_id", "name"],
        client_id=STRING,
        name=STRING,
        owners=_array(STRING),
        admin={"type": "boolean"},
        scope=STRING,
        disabled={"type": "boolean"},
        has_secret={"type": "boolean"},
        client_secret=STRING,
    ),
}


def document_of(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Duplicate Operation ID")
                schema = get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for unsent in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unsent, None)  # FastAPI's 422: this server answers 400
            schemas.update(SCHEMAS)
            for path, methods in schema["paths"].items():
                for method, operation in methods.items():
                    _complete(path, method, operation, schemas)
            app.openapi_schema = schema
        return app.openapi_schema

    return document


def _complete(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """One operation id per path and method (FastAPI gives a route that answers GET and POST,
    like `$find`, the same id for both), what it reads, what it answers."""
    operation["operationId"] = f"{operation['operationId']}_{method}"
    operation.get("responses", {}).pop("422", None)  # FastAPI's, kept only for a route not known
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] == "resource_type":
            parameter["schema"] = {"type": "string", "enum": list(SERVED_TYPES)}
    definition = definition_at(path)
    if definition is not None:
        _invoked(method, operation, definition, schemas)
        kind = answers.of_operation(definition, method)
    else:
        body = _body(path, method)
        if body is not None and "requestBody" not in operation:
            operation["requestBody"] = {"required": True, "content": body}
        kind = answers.of_route(path, method)
    if kind is not None:
        operation["responses"] = kind.responses()


def definition_at(path: str) -> dict[str, Any] | None:
    """The OperationDefinition `/fhir/Type/$op` or `/fhir/Type/{id}/$op` invokes."""
    segments = path.removeprefix("/fhir/").split("/")
    if len(segments) not in (2, 3) or not segments[-1].startswith("$"):
        return None
    level = "instance" if len(segments) == 3 else "type"
    kinds = SERVED_TYPES if segments[0] == "{resource_type}" else (segments[0],)
    invoked = (d for kind in kinds for d in operations.for_type(kind) if d[level])
    return next((d for d in invoked if d["code"] == segments[-1][1:]), None)


def _invoked(
    method: str, operation: dict[str, Any], definition: dict[str, Any], schemas: dict[str, Any]
) -> None:
    """An `$operation`'s inputs: query parameters for a GET, a Parameters body for a POST
    (optional when no input is required: the query string is read then)."""
    operation["summary"] = definition.get("title", operation.get("summary", ""))
    operation["description"] = definition.get("description", "")
    given = inputs(definition)
    if method == "get":
        operation.setdefault("parameters", []).extend(_query_parameter(p) for p in given)
        return
    name = f"Parameters.{definition['id']}"
    schemas[name] = parameters_schema(definition)
    operation["requestBody"] = {
        "required": any(p["min"] > 0 for p in given),
        "content": {FHIR_JSON: {"schema": ref(name)}},
    }


def inputs(definition: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in definition["parameter"] if p["use"] == "in"]


def _query_parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    """An input in the query string: `GET [base]/Appointment/$find?start=...`."""
    value = {"type": QUERY_TYPES.get(parameter.get("type", ""), "string")}
    repeated: dict[str, Any] = _array(value)
    if parameter["max"] not in ("1", "*"):
        repeated["maxItems"] = int(parameter["max"])
    return {
        "name": parameter["name"],
        "in": "query",
        "required": parameter["min"] > 0,
        "schema": value if parameter["max"] == "1" else repeated,
        "description": _line(parameter),
    }


def parameters_schema(definition: dict[str, Any]) -> dict[str, Any]:
    """A Parameters body of the operation's inputs only, each as the value[x] (or the resource)
    its type takes."""
    given = inputs(definition)
    parameter: dict[str, Any] = {"type": "array", "maxItems": 0}
    if given:
        values = {_value_key(p.get("type", "string")): _value(p) for p in given}
        names = {"enum": [p["name"] for p in given]}
        parameter = _array(_object(["name"], name=names, **values))
    listed = "\n".join(f"- {_line(p)}" for p in given) or "No inputs."
    described = f"The inputs of `${definition['code']}` (OperationDefinition/{definition['id']}):"
    return {**_fixed("Parameters", parameter=parameter), "description": f"{described}\n\n{listed}"}


def _line(parameter: dict[str, Any]) -> str:
    """`name` (type, min..max[, search type]): documentation."""
    kind = parameter.get("type", "string")
    search = f", search {parameter['searchType']}" if parameter.get("searchType") else ""
    cardinality = f"{parameter['min']}..{parameter['max']}"
    documentation = parameter.get("documentation", "")
    return f"`{parameter['name']}` ({kind}, {cardinality}{search}): {documentation}".strip()


def _value_key(fhir_type: str) -> str:
    """Where a Parameters entry carries a value of this type: `resource` or `value[x]`."""
    return "resource" if is_resource(fhir_type) else f"value{fhir_type[0].upper()}{fhir_type[1:]}"


def _value(parameter: dict[str, Any]) -> dict[str, Any]:
    fhir_type = parameter.get("type", "string")
    if is_resource(fhir_type):
        return ref("Resource")
    if fhir_type in QUERY_TYPES:
        return {"type": QUERY_TYPES[fhir_type]}
    return STRING if fhir_type[0].islower() else {"type": "object"}  # primitive or datatype


def _body(path: str, method: str) -> dict[str, Any] | None:
    if method == "patch":
        return {"application/json-patch+json": {"schema": ref("JsonPatch")}}
    if method not in ("post", "put"):
        return None
    if path == "/auth/token":
        return {"application/x-www-form-urlencoded": {"schema": ref("TokenRequest")}}
    if path.endswith("/_search"):
        return {"application/x-www-form-urlencoded": {"schema": ref("SearchForm")}}
    if path == "/fhir":
        return {FHIR_JSON: {"schema": ref("BatchOrTransaction")}}
    if path.startswith("/fhir/{resource_type}"):
        return {FHIR_JSON: {"schema": ref("Resource")}}
    return None
