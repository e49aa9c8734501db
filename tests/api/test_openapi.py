"""The OpenAPI document at `/openapi.json` tells the truth: each operation's inputs as its
OperationDefinition gives them, the statuses the routes really answer, each error an
OperationOutcome, and no status (FastAPI's 422) a route never sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.config import Settings
from server.fhir.resources import SERVED_TYPES
from tests.api.scheduling_setup import WINDOW, add_slots, booking, open_practice
from tests.factories import FHIR_JSON, create, make_practitioner, operate

OPERATIONS = Path(__file__).resolve().parents[2] / "profiles" / "operations"
FHIR_ERROR = {
    "application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
}
READ = "/fhir/{resource_type}/{resource_id}"
TYPE = "/fhir/{resource_type}"
FIND = "/fhir/Appointment/$find"
BOOK = "/fhir/Appointment/$book"
BULK = ("$export", "$export-status", "$export-file", "$import")  # an export needs a token
# Routes that validate no resource, so never answer 422.
NEVER_UNPROCESSABLE = (
    ("post", FIND),
    ("post", "/fhir/Location/{place_id}/$doses"),
    ("post", "/fhir/Organization/{owner_id}/$grant"),
    ("post", "/fhir/Organization/{owner_id}/$revoke"),
    ("post", "/fhir/Organization/{owner_id}/$grants"),
    ("post", "/fhir/{resource_type}/_search"),
)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(Settings(sandbox=True)).openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def _in_parameters(definition_file: str) -> list[dict[str, Any]]:
    definition = json.loads((OPERATIONS / definition_file).read_text())
    return [p for p in definition["parameter"] if p["use"] == "in"]


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    name = schema["$ref"].removeprefix("#/components/schemas/")
    resolved: dict[str, Any] = document["components"]["schemas"][name]
    return resolved


def test_every_operation_answers_a_success_and_its_errors_as_operation_outcomes(
    document: dict[str, Any],
) -> None:
    for path, method, operation in _operations(document):
        statuses = [int(status) for status in operation["responses"]]
        assert any(200 <= s < 300 for s in statuses), (method, path)
        errors = {s: operation["responses"][str(s)] for s in statuses if s >= 400}
        if path.startswith("/fhir/.well-known") or not path.startswith(("/fhir", "/auth/clients")):
            continue
        assert errors, (method, path)
        for status, response in errors.items():
            assert response["content"] == FHIR_ERROR, (method, path, status)
            assert response["description"], (method, path, status)


def test_every_fhir_route_refuses_xml_and_every_guarded_one_says_401_and_403(
    document: dict[str, Any],
) -> None:
    """Guarded: the routes of the served types, of any type, and the operations; public: the
    CapabilityStatement and the conformance resources, read from the server's own files."""
    for path, method, operation in _operations(document):
        segments = path.split("/")[2:]
        if path.startswith("/fhir/.well-known") or not path.startswith("/fhir"):
            continue
        assert "406" in operation["responses"], (method, path)
        guarded = not segments or segments[0] in (
            *SERVED_TYPES,
            "{resource_type}",
            "_history",
            *BULK,
        )
        if guarded:
            assert {"401", "403", "503"} <= set(operation["responses"]), (method, path)
        elif segments[0] == "$bulk-publish":  # public; a token, when sent, must be valid
            assert "401" in operation["responses"], (method, path)
            assert "403" not in operation["responses"], (method, path)
        else:
            assert not {"401", "403"} & set(operation["responses"]), (method, path)


def test_no_422_where_no_resource_is_validated(document: dict[str, Any]) -> None:
    for path, method, operation in _operations(document):
        if method in ("get", "delete") or (method, path) in NEVER_UNPROCESSABLE:
            assert "422" not in operation["responses"], (method, path)
    for method, path in (("post", TYPE), ("put", READ), ("patch", READ), ("post", BOOK)):
        assert "422" in document["paths"][path][method]["responses"], (method, path)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas


def test_find_by_get_takes_exactly_its_definition_s_inputs(document: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in document["paths"][FIND]["get"]["parameters"]}
    defined = _in_parameters("appointment-find.json")
    assert list(parameters) == [p["name"] for p in defined]
    for given in defined:
        parameter = parameters[given["name"]]
        assert parameter["in"] == "query"
        assert parameter["required"] is (given["min"] > 0), given["name"]
        repeated = parameter["schema"].get("type") == "array"
        assert repeated is (given["max"] != "1"), given["name"]
        assert given["type"] in parameter["description"]
    assert parameters["_count"]["schema"] == {"type": "integer"}


def test_book_takes_a_parameters_body_of_its_definition_s_inputs(
    document: dict[str, Any],
) -> None:
    content = document["paths"][BOOK]["post"]["requestBody"]["content"]
    body = _resolved(document, content["application/fhir+json"]["schema"])
    item = body["properties"]["parameter"]["items"]
    names = [p["name"] for p in _in_parameters("appointment-book.json")]
    assert item["properties"]["name"]["enum"] == names
    assert {"resource", "valueString", "valueReference"} <= set(item["properties"])
    for name in names:
        assert f"`{name}`" in body["description"]


def test_the_schemas_are_shared_components_that_resolve(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert {"OperationOutcome", "Bundle", "Parameters", "Resource"} <= set(schemas)
    references = json.dumps(document).split('"$ref": "#/components/schemas/')[1:]
    assert references
    for reference in references:
        assert reference.split('"')[0] in schemas
    bodies = {
        json.dumps(document["paths"][f"/fhir/{kind}/{{owner_id}}/$grant"]["post"]["requestBody"])
        for kind in ("Organization", "Practitioner")
    }
    assert len(bodies) == 1 and "$ref" in bodies.pop()  # one component, not two copies


def _documented(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """The answer's status is documented for the route, and so is its media type."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, (method, path, response.status_code)
    documented = responses[str(response.status_code)].get("content", {})
    media = response.headers.get("content-type", "").split(";")[0]
    assert (media in documented) if response.content else not documented, (method, path, media)


async def test_real_answers_are_documented(app: FastAPI, client: httpx.AsyncClient) -> None:
    """Read found, unchanged, missing, as XML, deleted, without a token; create invalid and
    unreadable; search, strict about an unknown parameter; `$find` with and without `start`;
    the CapabilityStatement."""
    document = (await client.get("/openapi.json")).json()
    read = f"/fhir/Practitioner/{(await create(client, make_practitioner()))['id']}"
    invalid = {"resourceType": "Practitioner", "gender": 7}
    strict = {"Prefer": "handling=strict"}
    answers = [
        (READ, "get", await client.get(read)),
        (READ, "get", await client.get(read, headers={"If-None-Match": 'W/"1"'})),
        (READ, "get", await client.get("/fhir/Practitioner/nobody")),
        (READ, "get", await client.get(read, headers={"Accept": "application/fhir+xml"})),
        (TYPE, "post", await client.post("/fhir/Practitioner", json=invalid, headers=FHIR_JSON)),
        (TYPE, "post", await client.post("/fhir/Practitioner", content=b"{", headers=FHIR_JSON)),
        (TYPE, "get", await client.get("/fhir/Practitioner", params={"family": "Martin"})),
        (TYPE, "get", await client.get("/fhir/Practitioner?nope=1", headers=strict)),
        (FIND, "get", await client.get(FIND, params=WINDOW)),
        (FIND, "get", await client.get(FIND)),
        ("/fhir/metadata", "get", await client.get("/fhir/metadata")),
        (READ, "delete", await client.delete(read)),
        (READ, "get", await client.get(read)),
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as anonymous:
        answers.append((READ, "get", await anonymous.get(read)))
    statuses = [response.status_code for *_, response in answers]
    assert statuses == [200, 304, 404, 406, 422, 400, 200, 400, 200, 400, 200, 204, 410, 401]
    for path, method, response in answers:
        _documented(document, path, method, response)


async def test_booking_answers_are_documented(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    first, second = practice.patients[:2]
    booked = await operate(client, "Appointment/$book", ("appt-resource", booking(slot_id, first)))
    taken = await operate(client, "Appointment/$book", ("appt-resource", booking(slot_id, second)))
    empty = await operate(client, "Appointment/$book")
    assert [booked.status_code, taken.status_code, empty.status_code] == [201, 409, 400]
    for response in (booked, taken, empty):
        _documented(document, BOOK, "post", response)
