"""Hold, book, cancel and reschedule, through the operations and through plain REST writes: the
same rules on every path."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from server.scheduling.vocabulary import BOOKING_RECORD, HOLD_EXPIRES
from tests.api.scheduling_setup import (
    TOMORROW,
    add_slots,
    booking,
    open_practice,
    refusal,
    slot_status,
)
from tests.conftest import TimeTravel
from tests.factories import (
    FHIR_JSON,
    appointment_in,
    create,
    make_slot,
    operate,
    participants,
    ref,
)


async def test_book_a_proposal_takes_the_slot(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    patient = practice.patients[0]
    response = await operate(
        client, "Appointment/$book", ("appt-resource", booking(slot_id, patient))
    )
    assert response.status_code == 201, response.text
    appointment = appointment_in(response)
    assert appointment["status"] == "booked"
    assert response.headers["location"].endswith(f"/Appointment/{appointment['id']}/_history/1")
    assert response.headers["etag"] == 'W/"1"'
    assert appointment["start"] == (await client.get(f"/fhir/Slot/{slot_id}")).json()["start"]
    record = [e for e in appointment["extension"] if e["url"] == BOOKING_RECORD]
    assert {p["url"] for p in record[0]["extension"]} == {"bookedAt", "client"}
    assert await slot_status(client, slot_id) == "busy"
    stored = (await client.get(f"/fhir/Appointment/{appointment['id']}")).json()
    assert stored == appointment


async def test_a_second_booking_of_the_slot_is_refused_and_says_why(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    first, second = practice.patients[:2]
    assert (
        await operate(client, "Appointment/$book", ("appt-resource", booking(slot_id, first)))
    ).status_code == 201
    again = await operate(client, "Appointment/$book", ("appt-resource", booking(slot_id, second)))
    assert f"Slot/{slot_id} cannot be booked" in refusal(again)
    assert again.json()["issue"][0]["code"] == "business-rule"
    found = await client.get("/fhir/Appointment", params={"slot": f"Slot/{slot_id}"})
    assert found.json()["total"] == 1


async def test_plain_rest_writes_meet_the_same_rules(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    free, taken = await add_slots(client, practice.consultations, 2)
    patient = practice.patients[0]
    made = await create(client, {**booking(taken, patient), "status": "booked"})
    assert made["status"] == "booked" and await slot_status(client, taken) == "busy"
    # POST, PUT and a transaction Bundle all hit the same wall on the taken slot
    post = await client.post(
        "/fhir/Appointment", json={**booking(taken, patient), "status": "booked"}, headers=FHIR_JSON
    )
    refusal(post)
    put = await client.put(
        "/fhir/Appointment/mine",
        json={**booking(taken, patient), "status": "booked", "id": "mine"},
        headers=FHIR_JSON,
    )
    refusal(put)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**booking(slot, patient), "status": "booked"},
                "request": {"method": "POST", "url": "Appointment"},
            }
            for slot in (free, taken)
        ],
    }
    refusal(await client.post("/fhir", json=bundle, headers=FHIR_JSON))
    assert await slot_status(client, free) == "free"  # all or nothing
    # A booking needs a patient
    no_patient = {
        **booking(free, patient),
        "status": "booked",
        "participant": participants(ref(practice.practitioner)),
    }
    refusal(await client.post("/fhir/Appointment", json=no_patient, headers=FHIR_JSON), 422)


async def test_slot_rules_protect_what_is_booked(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    await create(client, {**booking(slot_id, practice.patients[0]), "status": "booked"})
    slot = (await client.get(f"/fhir/Slot/{slot_id}")).json()
    url = f"/fhir/Slot/{slot_id}"
    refusal(await client.put(url, json={**slot, "status": "free"}, headers=FHIR_JSON))
    moved = {**slot, "start": slot["end"], "end": slot["end"].replace("T08", "T09")}
    refusal(await client.put(url, json=moved, headers=FHIR_JSON))
    refusal(await client.delete(url))
    blocked = await client.put(url, json={**slot, "status": "busy-unavailable"}, headers=FHIR_JSON)
    assert blocked.status_code == 200  # the owner may block it; the booking stays


async def test_server_managed_extensions_cannot_be_forged(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    forged = {
        **booking(slot_id, practice.patients[0]),
        "status": "booked",
        "extension": [
            {"url": BOOKING_RECORD, "extension": [{"url": "client", "valueString": "someone"}]}
        ],
    }
    made = await create(client, forged)
    (record,) = [e for e in made["extension"] if e["url"] == BOOKING_RECORD]
    assert {"url": "client", "valueString": client.client_id} in record["extension"]


async def test_hold_then_book(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    patient, other = practice.patients[:2]
    held = await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{slot_id}"}))
    assert held.status_code == 201, held.text
    hold = appointment_in(held)
    assert hold["status"] == "pending"
    assert [e["url"] for e in hold["extension"]] == [HOLD_EXPIRES]
    # nobody else can book it, by any path
    stolen = await operate(client, "Appointment/$book", ("appt-resource", booking(slot_id, other)))
    assert "on hold" in refusal(stolen)
    refusal(
        await client.post(
            "/fhir/Appointment",
            json={**booking(slot_id, other), "status": "booked"},
            headers=FHIR_JSON,
        )
    )
    # the holder books it, naming its patient
    finished = {**hold, "participant": hold["participant"] + participants(ref(patient))}
    booked = await operate(client, "Appointment/$book", ("appt-resource", finished))
    assert booked.status_code == 201, booked.text
    appointment = appointment_in(booked)
    assert appointment["id"] == hold["id"] and appointment["status"] == "booked"
    assert await slot_status(client, slot_id) == "busy"


async def test_an_expired_hold_frees_the_slot_by_itself(
    client: httpx.AsyncClient, time_travel: TimeTravel
) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    held = await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{slot_id}"}))
    hold = appointment_in(held)
    window = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=1)).isoformat()}
    found = await client.get("/fhir/Appointment/$find", params=window)
    assert found.json().get("total") == 0
    time_travel.forward(timedelta(minutes=5, seconds=1))
    found = await client.get("/fhir/Appointment/$find", params=window)
    assert found.json()["total"] == 1
    other = practice.patients[1]
    taken = await operate(client, "Appointment/$book", ("appt-resource", booking(slot_id, other)))
    assert taken.status_code == 201, taken.text
    # the lapsed hold cannot be booked any more: the slot went to someone else
    late = {**hold, "participant": participants(ref(practice.patients[0]))}
    refusal(await operate(client, "Appointment/$book", ("appt-resource", late)))


async def test_cancel_frees_the_slot_keeps_the_appointment_and_is_idempotent(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    made = appointment_in(
        await operate(
            client, "Appointment/$book", ("appt-resource", booking(slot_id, practice.patients[0]))
        )
    )
    url = f"/fhir/Appointment/{made['id']}"
    refusal(await operate(client, f"Appointment/{made['id']}/$cancel", ("reason", " ")), 400)
    cancelled = await operate(
        client, f"Appointment/{made['id']}/$cancel", ("reason", "Patient unwell")
    )
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["cancelationReason"] == {"text": "Patient unwell"}
    assert await slot_status(client, slot_id) == "free"
    again = await operate(client, f"Appointment/{made['id']}/$cancel", ("reason", "again"))
    assert again.json()["meta"]["versionId"] == body["meta"]["versionId"]
    refusal(await client.delete(url))
    history = (await client.get(f"{url}/_history")).json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["cancelled", "booked"]


async def test_cancel_needs_no_reason(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    made = appointment_in(
        await operate(
            client, "Appointment/$book", ("appt-resource", booking(slot_id, practice.patients[0]))
        )
    )
    cancelled = await operate(client, f"Appointment/{made['id']}/$cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert "cancelationReason" not in cancelled.json()
    assert await slot_status(client, slot_id) == "free"


@pytest.mark.parametrize(
    "path",
    [
        "Appointment/nope/$cancel",
        "Schedule/nope/$cancel-appointments",
        "Schedule/nope/$generate-slots",
        "Location/nope/$doses",
        "Practitioner/nope/$doses",
        "Organization/nope/$grant",
        "Organization/nope/$revoke",
        "Practitioner/nope/$grants",
    ],
)
async def test_an_instance_operation_looks_at_its_target_first(
    client: httpx.AsyncClient, path: str
) -> None:
    """A missing target is 404 whatever the inputs: here a reason of the wrong type, a start
    that is no date, a client that is no string."""
    response = await operate(
        client, path, ("reason", {"bad": 1}), ("start", "soon"), ("client", {"no": 1})
    )
    assert refusal(response, 404)


async def test_reschedule_is_both_or_neither(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    old, new, taken = await add_slots(client, practice.consultations, 3)
    patient, other = practice.patients[:2]
    first = appointment_in(
        await operate(client, "Appointment/$book", ("appt-resource", booking(old, patient)))
    )
    await operate(client, "Appointment/$book", ("appt-resource", booking(taken, other)))
    failed = await operate(
        client,
        "Appointment/$book",
        ("appt-resource", booking(taken, patient)),
        ("cancelled-appt-id", f"Appointment/{first['id']}"),
    )
    refusal(failed)
    assert (await client.get(f"/fhir/Appointment/{first['id']}")).json()["status"] == "booked"
    moved = await operate(
        client,
        "Appointment/$book",
        ("appt-resource", booking(new, patient)),
        ("cancelled-appt-id", f"Appointment/{first['id']}"),
    )
    assert moved.status_code == 201, moved.text
    statuses = [e["resource"]["status"] for e in moved.json()["entry"]]
    assert statuses == ["booked", "cancelled"]
    assert await slot_status(client, old) == "free" and await slot_status(client, new) == "busy"


async def test_the_apps_identifier_books_once(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    first, second = await add_slots(client, practice.consultations, 2)
    patient = practice.patients[0]
    mine = [{"system": "https://app.example/rdv", "value": "R-42"}]
    once = await operate(
        client, "Appointment/$book", ("appt-resource", booking(first, patient, identifier=mine))
    )
    twice = await operate(
        client, "Appointment/$book", ("appt-resource", booking(first, patient, identifier=mine))
    )
    assert (once.status_code, twice.status_code) == (201, 200)
    assert appointment_in(once)["id"] == appointment_in(twice)["id"]
    # POSTing the same identifier again is refused; a conditional PUT updates the appointment
    refusal(
        await client.post(
            "/fhir/Appointment",
            json={**booking(second, patient, identifier=mine), "status": "booked"},
            headers=FHIR_JSON,
        )
    )
    current = appointment_in(once)
    updated = await client.put(
        "/fhir/Appointment?identifier=https://app.example/rdv|R-42",
        json={**{k: v for k, v in current.items() if k != "id"}, "comment": "Bring the card"},
        headers=FHIR_JSON,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == current["id"] and updated.json()["comment"] == "Bring the card"


async def test_capacity_books_until_full_then_busy(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client, patients=4)
    (slot_id,) = await add_slots(client, practice.consultations, 1, seats=3)
    statuses = []
    for patient in practice.patients:
        response = await operate(
            client, "Appointment/$book", ("appt-resource", booking(slot_id, patient))
        )
        statuses.append(response.status_code)
        if len(statuses) < 3:
            assert await slot_status(client, slot_id) == "free"
    assert statuses == [201, 201, 201, 409]
    assert await slot_status(client, slot_id) == "busy"


async def test_an_inactive_schedule_takes_no_new_booking_and_keeps_its_bookings(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    kept, closed = await add_slots(client, practice.consultations, 2)
    patient = practice.patients[0]
    made = appointment_in(
        await operate(client, "Appointment/$book", ("appt-resource", booking(kept, patient)))
    )
    schedule = {**practice.consultations, "active": False}
    url = f"/fhir/Schedule/{schedule['id']}"
    assert (await client.put(url, json=schedule, headers=FHIR_JSON)).status_code == 200
    assert "not active" in refusal(
        await operate(client, "Appointment/$book", ("appt-resource", booking(closed, patient)))
    )
    assert (await client.get(f"/fhir/Appointment/{made['id']}")).json()["status"] == "booked"


async def test_past_slots_and_planning_horizon(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    patient = practice.patients[0]
    past = await create(
        client, make_slot(ref(practice.consultations), TOMORROW - timedelta(days=3))
    )
    assert "already started" in refusal(
        await operate(client, "Appointment/$book", ("appt-resource", booking(past["id"], patient)))
    )
    horizon = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=7)).isoformat()}
    schedule = {**practice.consultations, "planningHorizon": horizon}
    await client.put(f"/fhir/Schedule/{schedule['id']}", json=schedule, headers=FHIR_JSON)
    late = await create(
        client, make_slot(ref(practice.consultations), TOMORROW + timedelta(days=9))
    )
    assert "planning horizon" in refusal(
        await operate(client, "Appointment/$book", ("appt-resource", booking(late["id"], patient)))
    )


async def test_bad_operation_input_is_a_400_and_changes_nothing(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    patient = practice.patients[0]
    for bad in (
        {"resourceType": "Patient"},
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "appt-resource", "valueString": "x"}],
        },
        {"resourceType": "Parameters", "parameter": []},
        {"resourceType": "Parameters", "parameter": [{"name": 3}]},
    ):
        response = await client.post("/fhir/Appointment/$book", json=bad, headers=FHIR_JSON)
        refusal(response, 400)
    both = await operate(
        client,
        "Appointment/$book",
        ("appt-resource", booking(slot_id, patient)),
        ("appt-id", "Appointment/x"),
    )
    refusal(both, 400)
    invalid = {**booking(slot_id, patient), "status": "nonsense"}
    refusal(await operate(client, "Appointment/$book", ("appt-resource", invalid)), 422)
    refusal(await operate(client, "Appointment/$book", ("appt-id", "Appointment/nope")), 404)
    assert await slot_status(client, slot_id) == "free"


async def test_operations_never_answer_500(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    schedule, place = practice.consultations["id"], practice.place
    paths = (
        "Appointment/$find",
        "Appointment/$hold",
        "Appointment/$book",
        "Appointment/x/$cancel",
        f"Schedule/{schedule}/$cancel-appointments",
        f"Schedule/{schedule}/$generate-slots",
        f"{place}/$doses",
    )
    names = (
        "start",
        "end",
        "appt-resource",
        "appt-id",
        "slot",
        "cancelled-appt-id",
        "reason",
        "dry-run",
        "service-type",
        "created-after",
        "horizon-end",
        "vaccine",
        "_count",
        "_include",
        "practitioner",
        "address-postalcode",
        "booked-by",
    )
    values = (
        {"valueString": "x" * 300},
        {"valueInteger": -1},
        {"valueBoolean": True},
        {"valueDateTime": "2026"},
        {"valueReference": {"reference": "Slot/%00"}},
        {"valueCoding": {"code": ""}},
        {"resource": {"resourceType": "Patient"}},
        {"resource": {"resourceType": "Appointment", "status": "booked", "participant": []}},
        {"valueString": f"Slot/{slot_id}"},
        {"valueCodeableConcept": {"text": ""}},
    )
    seen = []
    for path in paths:
        for name in names:
            for value in values:
                body = {"resourceType": "Parameters", "parameter": [{"name": name, **value}]}
                response = await client.post(f"/fhir/{path}", json=body, headers=FHIR_JSON)
                seen.append((path, name, str(value)[:40], response.status_code))
                assert response.json()["resourceType"] in (
                    "OperationOutcome",
                    "Bundle",
                    "Parameters",
                    "Appointment",
                )
        for raw in (b"", b"[]", b"{", b'{"resourceType":"Parameters","parameter":{}}'):
            response = await client.post(f"/fhir/{path}", content=raw, headers=FHIR_JSON)
            seen.append((path, "raw", repr(raw), response.status_code))
    assert [s for s in seen if s[3] >= 500] == []
    assert await slot_status(client, slot_id) == "free"


async def test_unknown_inputs_are_refused_only_under_strict_handling(
    client: httpx.AsyncClient,
) -> None:
    params = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=1)).isoformat()}
    lenient = await client.get("/fhir/Appointment/$find", params={**params, "colour": "blue"})
    assert lenient.status_code == 200, lenient.text
    strict = await client.get(
        "/fhir/Appointment/$find",
        params={**params, "colour": "blue"},
        headers={"Prefer": "handling=strict"},
    )
    assert "colour" in refusal(strict, 400)
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    by_slot = await operate(client, "Appointment/$book", ("slot", {"reference": f"Slot/{slot_id}"}))
    assert "appt-resource or appointment-resource" in refusal(by_slot, 400)


async def test_a_booked_hold_drops_its_expiry_and_more_seats_reopen_a_full_slot(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    hold = appointment_in(
        await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{slot_id}"}))
    )
    finished = {**hold, "participant": participants(ref(practice.patients[0]))}
    booked = appointment_in(await operate(client, "Appointment/$book", ("appt-resource", finished)))
    assert HOLD_EXPIRES not in [e["url"] for e in booked["extension"]]
    slot = (await client.get(f"/fhir/Slot/{slot_id}")).json()
    assert slot["status"] == "busy"
    seats = [
        {
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity",
            "valueInteger": 2,
        }
    ]
    await client.put(f"/fhir/Slot/{slot_id}", json={**slot, "extension": seats}, headers=FHIR_JSON)
    assert await slot_status(client, slot_id) == "free"
