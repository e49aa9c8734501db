"""The CapabilityStatement announces the scheduling operations on their resource types, and each
OperationDefinition it points to can be read at /fhir/OperationDefinition/{id}."""

from __future__ import annotations

import httpx
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.operationdefinition import OperationDefinition

from server.fhir import operations

BASE = "https://fhir.creneau.org/OperationDefinition/"


async def test_metadata_lists_the_operations_on_their_types(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    declared = {
        r["type"]: {o["name"]: o["definition"] for o in r.get("operation", [])}
        for r in statement["rest"][0]["resource"]
    }
    validate = {"validate": BASE + "validate"}  # on every type
    assert declared["Appointment"] == {
        "find": BASE + "appointment-find",
        "hold": BASE + "appointment-hold",
        "book": BASE + "appointment-book",
        "cancel": BASE + "appointment-cancel",
        **validate,
    }
    assert declared["Schedule"] == {
        "cancel-appointments": BASE + "schedule-cancel-appointments",
        "generate-slots": BASE + "schedule-generate-slots",
        **validate,
    }
    assert declared["Location"] == {"doses": BASE + "doses", **validate}
    grants = {code: BASE + code for code in ("grant", "revoke", "grants")}
    assert declared["Organization"] == {**grants, **validate}
    exports = {"export": BASE + "export"}
    assert declared["Practitioner"] == {"doses": BASE + "doses", **grants, **exports, **validate}
    assert declared["Patient"] == declared["Slot"] == validate


async def test_read_an_operation_definition(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/OperationDefinition/appointment-book")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    OperationDefinition.model_validate(body)
    assert body == operations.get("appointment-book")
    assert (body["url"], body["code"]) == (BASE + "appointment-book", "book")


async def test_every_declared_definition_can_be_read(client: httpx.AsyncClient) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    urls = {
        o["definition"] for r in statement["rest"][0]["resource"] for o in r.get("operation", [])
    }
    for url in sorted(urls):
        response = await client.get("/fhir/OperationDefinition/" + url.removeprefix(BASE))
        assert response.status_code == 200 and response.json()["url"] == url


async def test_unknown_operation_definition_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/OperationDefinition/appointment-teleport")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "not-found"


async def test_operation_definitions_are_read_only(client: httpx.AsyncClient) -> None:
    definition = operations.get("appointment-book")
    for method in ("PUT", "DELETE"):
        response = await client.request(
            method,
            "/fhir/OperationDefinition/appointment-book",
            json=definition if method == "PUT" else None,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert response.status_code == 405, method
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_metadata_names_smart_and_its_token_endpoint(client: httpx.AsyncClient) -> None:
    security = (await client.get("/fhir/metadata")).json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    [uris] = security["extension"]
    assert uris["extension"] == [{"url": "token", "valueUri": "http://test/auth/token"}]
    assert security["cors"] is False
    resources = {
        r["type"]: r for r in (await client.get("/fhir/metadata")).json()["rest"][0]["resource"]
    }
    for kind in ("AuditEvent", "Provenance"):
        codes = {i["code"] for i in resources[kind]["interaction"]}
        assert codes.isdisjoint({"update", "patch", "delete"}) and "create" in codes
