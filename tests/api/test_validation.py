"""Invalid resources are refused (422 naming the element, or 400) and change nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import (
    FHIR_JSON,
    create,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    ref,
)


async def history_size(client: httpx.AsyncClient) -> int:
    """How many versions the whole server holds: any write, even a failed half one, shows."""
    response = await client.get("/fhir/_history?_count=1000")
    assert response.status_code == 200
    return len(response.json().get("entry", []))


def expressions(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert all(issue["severity"] in ("error", "fatal") for issue in body["issue"])
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


async def schedule_ref(client: httpx.AsyncClient) -> str:
    practitioner = await create(client, make_practitioner())
    return ref(await create(client, make_schedule(ref(practitioner))))


def appointment(slot: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": slot}],
        "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}],
    }


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown-element", {**make_patient(), "nickname": "Lou"}, "Patient.nickname"),
    (
        "unknown-nested",
        {**make_patient(), "name": [{"family": "D", "middle": "X"}]},
        "Patient.name[0].middle",
    ),
    ("wrong-type-bool", {**make_patient(), "active": "yes"}, "Patient.active"),
    ("wrong-type-date", {**make_patient(), "birthDate": "14/03/1987"}, "Patient.birthDate"),
    ("wrong-type-list", {**make_patient(), "name": {"family": "D"}}, "Patient.name"),
    ("bad-gender-code", {**make_patient(), "gender": "robot"}, "Patient.gender"),
]


@pytest.mark.parametrize(
    ("resource", "expression"),
    [(r, e) for _, r, e in INVALID],
    ids=[name for name, _, _ in INVALID],
)
async def test_invalid_patient_is_422_naming_the_element(
    client: httpx.AsyncClient, resource: dict[str, Any], expression: str
) -> None:
    before = await history_size(client)
    created = await client.post("/fhir/Patient", json=resource, headers=FHIR_JSON)
    assert created.status_code == 422, created.text
    assert expression in expressions(created)
    updated = await client.put("/fhir/Patient/p1", json={**resource, "id": "p1"}, headers=FHIR_JSON)
    assert updated.status_code == 422
    assert any(e.endswith(expression.removeprefix("Patient")) for e in expressions(updated))
    assert await history_size(client) == before
    assert (await client.get("/fhir/Patient/p1")).status_code == 404


async def test_bad_appointment_status_is_422(client: httpx.AsyncClient) -> None:
    slot = await create(client, make_slot(await schedule_ref(client)))
    before = await history_size(client)
    bogus = {**appointment(ref(slot)), "status": "bogus"}
    response = await client.post("/fhir/Appointment", json=bogus, headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    assert expressions(response) == ["Appointment.status"]
    assert await history_size(client) == before


async def test_bad_slot_status_is_422(client: httpx.AsyncClient) -> None:
    schedule = await schedule_ref(client)
    before = await history_size(client)
    response = await client.post(
        "/fhir/Slot", json=make_slot(schedule, status="open"), headers=FHIR_JSON
    )
    assert response.status_code == 422, response.text
    assert expressions(response) == ["Slot.status"]
    assert await history_size(client) == before


@pytest.mark.parametrize("element", ["start", "end", "status", "schedule"])
async def test_slot_missing_required_element_is_422(
    client: httpx.AsyncClient, element: str
) -> None:
    schedule = await schedule_ref(client)
    before = await history_size(client)
    slot = make_slot(schedule)
    del slot[element]
    response = await client.post("/fhir/Slot", json=slot, headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    assert f"Slot.{element}" in expressions(response)
    assert await history_size(client) == before


async def test_slot_on_unknown_schedule_is_422(client: httpx.AsyncClient) -> None:
    before = await history_size(client)
    for schedule in ("Schedule/nowhere", "http://test/fhir/Schedule/nowhere"):
        response = await client.post("/fhir/Slot", json=make_slot(schedule), headers=FHIR_JSON)
        assert response.status_code == 422, response.text
        assert expressions(response) == ["Slot.schedule"]
    put = await client.put(
        "/fhir/Slot/s1", json={**make_slot("Schedule/nowhere"), "id": "s1"}, headers=FHIR_JSON
    )
    assert put.status_code == 422 and expressions(put) == ["Slot.schedule"]
    assert await history_size(client) == before


async def test_slot_on_deleted_schedule_is_422(client: httpx.AsyncClient) -> None:
    schedule = await schedule_ref(client)
    assert (await client.delete(f"/fhir/{schedule}")).status_code == 204
    before = await history_size(client)
    response = await client.post("/fhir/Slot", json=make_slot(schedule), headers=FHIR_JSON)
    assert response.status_code == 422 and expressions(response) == ["Slot.schedule"]
    assert await history_size(client) == before


async def test_slot_schedule_of_wrong_type_is_422(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    before = await history_size(client)
    response = await client.post("/fhir/Slot", json=make_slot(ref(patient)), headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    assert "Slot.schedule" in expressions(response)
    assert await history_size(client) == before


async def test_appointment_on_unknown_slot_is_422(client: httpx.AsyncClient) -> None:
    slot = await create(client, make_slot(await schedule_ref(client)))
    before = await history_size(client)
    body = appointment("Slot/nowhere")
    body["slot"].insert(0, {"reference": ref(slot)})
    response = await client.post("/fhir/Appointment", json=body, headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    assert expressions(response) == ["Appointment.slot"]
    assert await history_size(client) == before
    assert (await client.get("/fhir/Appointment")).json()["total"] == 0


async def test_valid_slot_and_appointment_are_accepted(client: httpx.AsyncClient) -> None:
    """The control for the tests above: the same bodies, made valid, are stored."""
    slot = await create(client, make_slot(await schedule_ref(client)))
    await create(client, appointment(ref(slot)))


async def test_resource_type_not_matching_url_is_400(client: httpx.AsyncClient) -> None:
    before = await history_size(client)
    posted = await client.post("/fhir/Practitioner", json=make_patient(), headers=FHIR_JSON)
    assert posted.status_code == 400, posted.text
    assert posted.json()["resourceType"] == "OperationOutcome"
    put = await client.put(
        "/fhir/Practitioner/x1", json={**make_patient(), "id": "x1"}, headers=FHIR_JSON
    )
    assert put.status_code == 400 and put.json()["resourceType"] == "OperationOutcome"
    assert await history_size(client) == before
    assert (await client.get("/fhir/Patient/x1")).status_code == 404


async def test_put_with_other_id_in_body_is_400(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    before = await history_size(client)
    url = f"/fhir/Patient/{patient['id']}"
    for body in ({**patient, "id": "someone-else"}, {**make_patient(), "id": "new-one"}):
        response = await client.put(url, json={**body, "gender": "male"}, headers=FHIR_JSON)
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    missing = await client.put(url, json={**make_patient(), "gender": "male"}, headers=FHIR_JSON)
    assert missing.status_code == 400, missing.text
    assert await history_size(client) == before
    assert (await client.get(url)).json()["gender"] == "female"
    assert (await client.get("/fhir/Patient/someone-else")).status_code == 404


@pytest.mark.parametrize(
    "bad_id",
    ["a$b", "a" * 65, "a_b", "é", "a%20b"],
    ids=["dollar", "65-chars", "underscore", "accent", "space"],
)
async def test_invalid_id_in_url_is_400(client: httpx.AsyncClient, bad_id: str) -> None:
    before = await history_size(client)
    url = f"/fhir/Patient/{bad_id}"
    assert (await client.get(url)).status_code == 400
    put = await client.put(url, json={**make_patient(), "id": bad_id}, headers=FHIR_JSON)
    assert put.status_code == 400, put.text
    assert put.json()["resourceType"] == "OperationOutcome"
    assert (await client.delete(url)).status_code == 400
    assert (await client.get(f"{url}/_history")).status_code == 400
    assert await history_size(client) == before


async def test_longest_valid_id_is_accepted(client: httpx.AsyncClient) -> None:
    good = "A-z.0" + "9" * 59
    response = await client.put(
        f"/fhir/Patient/{good}", json={**make_patient(), "id": good}, headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text


async def test_invalid_id_in_body_of_post_is_refused(client: httpx.AsyncClient) -> None:
    before = await history_size(client)
    response = await client.post(
        "/fhir/Patient", json={**make_patient(), "id": "a$b"}, headers=FHIR_JSON
    )
    assert response.status_code in (400, 422), response.text
    assert await history_size(client) == before


@pytest.mark.parametrize(
    "schedule",
    [
        {"display": "Dr Martin"},
        {"identifier": {"system": "urn:x", "value": "1"}},
        {"reference": "#contained"},
        {"reference": "http://elsewhere.example/fhir/Schedule/1"},
    ],
    ids=["display-only", "identifier-only", "contained", "other-server"],
)
async def test_slot_schedule_that_cannot_resolve_here_is_422(
    client: httpx.AsyncClient, schedule: dict[str, Any]
) -> None:
    before = await history_size(client)
    slot = {**make_slot("Schedule/x"), "schedule": schedule}
    response = await client.post("/fhir/Slot", json=slot, headers=FHIR_JSON)
    assert response.status_code == 422, response.text
    assert "Slot.schedule" in expressions(response)
    assert await history_size(client) == before
