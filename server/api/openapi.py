"""The OpenAPI document at `/openapi.json`: FastAPI's, with what a FHIR API reads by hand.

The FHIR routes read their bodies themselves (a resource, a Bundle, a Parameters, a JSON Patch,
a search form), so FastAPI cannot see them; this says which media type each takes and its
outline, and which resource types `{resource_type}` may be. Clients and fuzzers
(`tests/api/test_fuzz.py`) then send the bodies the server really reads. The full definitions
stay the FHIR ones, in the CapabilityStatement and the StructureDefinitions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.fhir.resources import SERVED_TYPES

FHIR_JSON = "application/fhir+json"
RESOURCE = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
}
PARAMETERS = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {
        "resourceType": {"const": "Parameters"},
        "parameter": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
        },
    },
}
BUNDLE = {
    "type": "object",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"enum": ["transaction", "batch"]},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "resource": RESOURCE,
                    "request": {
                        "type": "object",
                        "required": ["method", "url"],
                        "properties": {
                            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                            "url": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
JSON_PATCH = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["op", "path"],
        "properties": {
            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
            "path": {"type": "string"},
            "from": {"type": "string"},
            "value": {},
        },
    },
}
FORM = {"type": "object", "additionalProperties": {"type": "string"}}
TOKEN_FORM = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string"},
        "scope": {"type": "string"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "client_assertion_type": {"type": "string"},
        "client_assertion": {"type": "string"},
    },
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
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    _complete(path, method, operation)
            for unsent in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(unsent, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return document


def _complete(path: str, method: str, operation: dict[str, Any]) -> None:
    """One operation id per path and method (FastAPI gives a route that answers GET and POST,
    like `$find`, the same id for both), the body it reads, the resource types it serves."""
    operation["operationId"] = f"{operation['operationId']}_{method}"
    # FastAPI's 422 for its own parameter validation: this server answers 400 OperationOutcome
    operation.get("responses", {}).pop("422", None)
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] == "resource_type":
            parameter["schema"] = {"type": "string", "enum": list(SERVED_TYPES)}
    body = _body(path, method)
    if body is not None and "requestBody" not in operation:
        operation["requestBody"] = {"required": True, "content": body}


def _body(path: str, method: str) -> dict[str, Any] | None:
    if method == "patch":
        return {"application/json-patch+json": {"schema": JSON_PATCH}}
    if method not in ("post", "put"):
        return None
    if path == "/auth/token":
        return {"application/x-www-form-urlencoded": {"schema": TOKEN_FORM}}
    if path.endswith("/_search"):
        return {"application/x-www-form-urlencoded": {"schema": FORM}}
    if path == "/fhir":
        return {FHIR_JSON: {"schema": BUNDLE}}
    if "/$" in path:
        return {FHIR_JSON: {"schema": PARAMETERS}}
    if path.startswith("/fhir/{resource_type}"):
        return {FHIR_JSON: {"schema": RESOURCE}}
    return None
