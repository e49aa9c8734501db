"""The paths around the booking rules, closed on every path that writes an Appointment: `$hold`,
`$book`, `POST`, `PUT`, `PATCH` and a transaction entry. Each refusal is checked to change
nothing: the versions of the Appointment and its Slot, the appointments on the slot, the dose
ledger. On both stores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from server.scheduling.vocabulary import HOLD_EXPIRES
from tests.api.access_setup import Owner, grant, open_owner, revoke
from tests.api.rule_paths_setup import CREATING, UPDATING, Clinic, open_clinic, snapshot, write
from tests.api.scheduling_setup import TOMORROW, VACCINE, booking, ledger, refusal
from tests.conftest import AppClient, TimeTravel
from tests.factories import (
    FHIR_JSON,
    appointment_in,
    create,
    make_patient,
    make_slot,
    operate,
    ref,
)

# a start before any slot's, an end after any slot's (an end before the start breaks
# creneau-app-1 before the rules see it)
FORGED_START, FORGED_END = "2001-01-01T09:00:00Z", "2099-01-01T09:05:00Z"
HOLD_TIME = timedelta(minutes=5)


def rule_refusal(response: httpx.Response, status: int = 422) -> str:
    """The diagnostics of a refusal by the rules (issue code business-rule)."""
    said = refusal(response, status)
    assert response.json()["issue"][0]["code"] == "business-rule", response.text
    return said


async def hold_of(http: httpx.AsyncClient, slot_id: str, patient: dict[str, Any]) -> dict:
    held = await operate(http, "Appointment/$hold", ("appt-resource", booking(slot_id, patient)))
    assert held.status_code == 201, held.text
    return appointment_in(held)


async def booked_on(http: httpx.AsyncClient, slot_id: str, patient: dict[str, Any]) -> dict:
    made = await operate(http, "Appointment/$book", ("appt-resource", booking(slot_id, patient)))
    assert made.status_code == 201, made.text
    return appointment_in(made)


def expiry(appointment: dict[str, Any]) -> str | None:
    found = [
        e["valueInstant"] for e in appointment.get("extension", []) if e["url"] == HOLD_EXPIRES
    ]
    return found[0] if found else None


async def stored(client: httpx.AsyncClient, appointment_id: str) -> dict[str, Any]:
    response = await client.get(f"/fhir/Appointment/{appointment_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# 1. An Appointment lasts as long as its slots


@pytest.mark.parametrize("path", CREATING)
async def test_a_new_appointment_cannot_start_apart_from_its_slot(
    client: httpx.AsyncClient, path: str
) -> None:
    clinic = await open_clinic(client)
    before = await snapshot(client, clinic.slots, clinic.place)
    forged = {**booking(clinic.slots[0], clinic.patient), "status": "booked", "start": FORGED_START}
    assert "start of its slots" in rule_refusal(await write(client, path, forged))
    assert await snapshot(client, clinic.slots, clinic.place) == before


@pytest.mark.parametrize("path", UPDATING)
async def test_a_booking_cannot_end_apart_from_its_slot(
    client: httpx.AsyncClient, path: str
) -> None:
    clinic = await open_clinic(client)
    made = await booked_on(client, clinic.slots[0], clinic.patient)
    before = await snapshot(client, clinic.slots, clinic.place, (made["id"],))
    assert "end of its slots" in rule_refusal(
        await write(client, path, {**made, "end": FORGED_END})
    )
    assert await snapshot(client, clinic.slots, clinic.place, (made["id"],)) == before


async def test_start_and_end_are_the_span_of_the_slots(client: httpx.AsyncClient) -> None:
    clinic = await open_clinic(client, slots=3, doses=2)
    first, second, third = [(await client.get(f"/fhir/Slot/{s}")).json() for s in clinic.slots]
    both = {
        **booking(first["id"], clinic.patient),
        "slot": [{"reference": f"Slot/{second['id']}"}, {"reference": f"Slot/{first['id']}"}],
    }
    made = await booked_on_body(client, both)
    assert (made["start"], made["end"]) == (first["start"], second["end"])
    found = await client.get(
        "/fhir/Appointment", params={"date": f"ge{first['start']}", "_summary": "count"}
    )
    assert found.json()["total"] == 1
    # the same instant written at another offset is the same start
    paris = timezone(timedelta(hours=1))
    elsewhere = datetime.fromisoformat(third["start"]).astimezone(paris).isoformat()
    other = {**booking(third["id"], clinic.patient), "start": elsewhere}
    assert (await booked_on_body(client, other))["start"] == elsewhere


async def booked_on_body(client: httpx.AsyncClient, appointment: dict[str, Any]) -> dict:
    made = await operate(client, "Appointment/$book", ("appt-resource", appointment))
    assert made.status_code == 201, made.text
    return appointment_in(made)


# 2. A hold is booked only if a fresh booking would be

Condition = Callable[[httpx.AsyncClient, Clinic, TimeTravel], Awaitable[None]]


async def schedule_inactive(client: httpx.AsyncClient, clinic: Clinic, _: TimeTravel) -> None:
    await put(client, {**clinic.schedule, "active": False})


async def slot_blocked(client: httpx.AsyncClient, clinic: Clinic, _: TimeTravel) -> None:
    slot = (await client.get(f"/fhir/Slot/{clinic.slots[0]}")).json()
    await put(client, {**slot, "status": "busy-unavailable"})


async def horizon_shortened(client: httpx.AsyncClient, clinic: Clinic, _: TimeTravel) -> None:
    ended = TOMORROW - timedelta(hours=1)
    horizon = {"start": (ended - timedelta(days=1)).isoformat(), "end": ended.isoformat()}
    await put(client, {**clinic.schedule, "planningHorizon": horizon})


async def doses_withdrawn(client: httpx.AsyncClient, clinic: Clinic, _: TimeTravel) -> None:
    item = {**clinic.delivery["suppliedItem"], "quantity": {"value": 0, "unit": "dose"}}
    await put(client, {**clinic.delivery, "suppliedItem": item})


async def slot_started(client: httpx.AsyncClient, clinic: Clinic, clock: TimeTravel) -> None:
    clock.forward(HOLD_TIME - timedelta(minutes=2))  # the hold lives on; its slot has begun


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    response = await client.put(url, json=resource, headers=FHIR_JSON)
    assert response.status_code == 200, response.text


CONVERTING = ("book-id", "book", "put", "patch", "transaction")
CONDITIONS: dict[str, tuple[Condition, str]] = {
    "schedule-inactive": (schedule_inactive, "its Schedule is not active"),
    "slot-blocked": (slot_blocked, "it is busy-unavailable"),
    "outside-horizon": (horizon_shortened, "planning horizon"),
    "doses-withdrawn": (doses_withdrawn, "No dose of vaccine"),
    "slot-started": (slot_started, "it has already started"),
}
CONVERSIONS = [(c, p) for c in ("schedule-inactive", "slot-blocked") for p in CONVERTING] + [
    (c, p)
    for c in ("outside-horizon", "doses-withdrawn", "slot-started")
    for p in ("book-id", "put")
]


@pytest.mark.parametrize(("condition", "path"), CONVERSIONS)
async def test_a_hold_is_booked_only_if_a_fresh_booking_would_be(
    client: httpx.AsyncClient, time_travel: TimeTravel, condition: str, path: str
) -> None:
    clinic = await open_clinic(client)
    if condition == "slot-started":  # a slot that starts within the hold time
        soon = time_travel.now() + timedelta(minutes=2)
        created = await create(client, make_slot(ref(clinic.schedule), soon, minutes=5))
        clinic.slots = [created["id"]]
    hold = await hold_of(client, clinic.slots[0], clinic.patient)
    change, reason = CONDITIONS[condition]
    await change(client, clinic, time_travel)
    before = await snapshot(client, clinic.slots, clinic.place, (hold["id"],))
    response = await write(client, path, {**hold, "status": "booked"})
    assert reason in rule_refusal(response, 409)
    assert await snapshot(client, clinic.slots, clinic.place, (hold["id"],)) == before


async def booking_app(
    client: httpx.AsyncClient, app_client: AppClient, name: str = "booking-app"
) -> tuple[Owner, httpx.AsyncClient]:
    owner = await open_owner(client, app_client, "Cabinet Voltaire", slots=2)
    app = await app_client(name)
    await grant(owner.agenda, owner.ref, app.client_id, "book")
    return owner, app


@pytest.mark.parametrize("path", ["book-id", "put"])
async def test_a_hold_is_not_booked_once_the_owner_revokes_the_grant(
    client: httpx.AsyncClient, app_client: AppClient, path: str
) -> None:
    owner, app = await booking_app(client, app_client)
    hold = await hold_of(app, owner.slots[0], await create(app, make_patient()))
    await revoke(owner.agenda, owner.ref, app.client_id)
    place = ref(owner.practitioner)
    before = await snapshot(client, owner.slots, place, (hold["id"],))
    refusal(await write(app, path, {**hold, "status": "booked"}), 404)
    assert await snapshot(client, owner.slots, place, (hold["id"],)) == before


# 3. The server fixes how long a hold lasts, and how much one Appointment takes


@pytest.mark.parametrize("path", UPDATING)
async def test_a_hold_is_never_renewed(
    client: httpx.AsyncClient, time_travel: TimeTravel, path: str
) -> None:
    clinic = await open_clinic(client)
    hold = await hold_of(client, clinic.slots[0], clinic.patient)
    expires = expiry(hold)
    time_travel.forward(HOLD_TIME - timedelta(minutes=1))
    assert (await write(client, path, {**hold, "comment": "almost"})).status_code == 200
    assert expiry(await stored(client, hold["id"])) == expires
    time_travel.forward(timedelta(minutes=1, seconds=1))
    again = await stored(client, hold["id"])
    assert (await write(client, path, {**again, "comment": "still here"})).status_code == 200
    assert expiry(await stored(client, hold["id"])) == expires
    # lapsed it stays: its slot and its dose are anyone's
    assert (await ledger(client, clinic.place))[VACCINE]["reserved"] == 0
    taken = await operate(
        client, "Appointment/$hold", ("slot", {"reference": hold["slot"][0]["reference"]})
    )
    assert taken.status_code == 201, taken.text


async def test_a_lapsed_hold_is_not_held_again(
    client: httpx.AsyncClient, time_travel: TimeTravel
) -> None:
    clinic = await open_clinic(client)
    hold = await hold_of(client, clinic.slots[0], clinic.patient)
    time_travel.forward(HOLD_TIME + timedelta(seconds=1))
    before = await snapshot(client, clinic.slots, clinic.place, (hold["id"],))
    assert "not renewed" in rule_refusal(await write(client, "hold-id", hold), 409)
    assert await snapshot(client, clinic.slots, clinic.place, (hold["id"],)) == before


@pytest.mark.parametrize("path", [*CREATING, "put", "patch"])
async def test_an_appointment_takes_at_most_eight_slots(
    client: httpx.AsyncClient, path: str
) -> None:
    clinic = await open_clinic(client, slots=9)
    nine = [{"reference": f"Slot/{s}"} for s in clinic.slots]
    appointment: dict[str, Any] = {**booking(clinic.slots[0], clinic.patient), "status": "booked"}
    kept: tuple[str, ...] = ()
    if path in ("put", "patch"):
        appointment = await booked_on(client, clinic.slots[0], clinic.patient)
        kept = (appointment["id"],)
    before = await snapshot(client, clinic.slots, clinic.place, kept)
    said = rule_refusal(await write(client, path, {**appointment, "slot": nine}))
    assert "at most 8 slots" in said
    assert await snapshot(client, clinic.slots, clinic.place, kept) == before


# 4. A hold and an app's identifiers are its client's own


@pytest.mark.parametrize("path", ["hold-id", "book-id", "book", "put", "patch", "transaction"])
async def test_a_hold_is_booked_only_by_the_client_that_made_it(
    client: httpx.AsyncClient, app_client: AppClient, path: str
) -> None:
    owner, app = await booking_app(client, app_client)
    hold = await hold_of(app, owner.slots[0], await create(app, make_patient()))
    place = ref(owner.practitioner)
    before = await snapshot(client, owner.slots, place, (hold["id"],))
    # the schedule's owner sees the hold, and may cancel it, but not take it over
    assert "another client" in refusal(
        await write(owner.agenda, path, {**hold, "status": "booked"}), 403
    )
    # another app, which may not see it, is told it does not exist
    other = await app_client("other-app")
    await grant(owner.agenda, owner.ref, other.client_id, "book")
    refusal(await write(other, path, {**hold, "status": "booked"}), 404)
    assert await snapshot(client, owner.slots, place, (hold["id"],)) == before


@pytest.mark.parametrize("path", ["book", "post", "transaction"])
@pytest.mark.parametrize("who", ["other-app", "owner"])
async def test_an_identifier_is_its_clients_own(
    client: httpx.AsyncClient, app_client: AppClient, path: str, who: str
) -> None:
    owner, app = await booking_app(client, app_client)
    ours = [{"system": "https://app.example/rdv", "value": "R-42"}]
    mine = booking(owner.slots[0], await create(app, make_patient("Un")), identifier=ours)
    first = await booked_on_body(app, mine)
    second = owner.agenda
    if who == "other-app":
        second = await app_client("other-app")
        await grant(owner.agenda, owner.ref, second.client_id, "book")
    patient = await create(second, make_patient("Deux"))
    theirs = {**booking(owner.slots[1], patient, identifier=ours), "status": "booked"}
    response = await write(second, path, theirs)
    assert response.status_code in (200, 201), response.text
    assert first["id"] not in response.text and ref(patient) in response.text
    made = await client.get("/fhir/Appointment", params={"slot": f"Slot/{owner.slots[1]}"})
    assert [ref(patient) in str(e["resource"]) for e in made.json()["entry"]] == [True]
    assert (await stored(client, first["id"]))["meta"]["versionId"] == "1"
    # the first app's retry still finds its own booking
    again = await operate(app, "Appointment/$book", ("appt-resource", mine))
    assert (again.status_code, appointment_in(again)["id"]) == (200, first["id"])


# 5. The status machine


@pytest.mark.parametrize("path", ["hold-id", "book-id", "book", "put", "patch", "transaction"])
async def test_a_cancelled_appointment_is_never_revived(
    client: httpx.AsyncClient, path: str
) -> None:
    clinic = await open_clinic(client)
    hold = await hold_of(client, clinic.slots[0], clinic.patient)
    cancelled = await operate(
        client, f"Appointment/{hold['id']}/$cancel", ("reason", "changed mind")
    )
    assert cancelled.status_code == 200, cancelled.text
    before = await snapshot(client, clinic.slots, clinic.place, (hold["id"],))
    # without its cancelationReason, which only a cancelled or no-show one may carry (app-4)
    revived = {**cancelled.json(), "status": "booked"}
    del revived["cancelationReason"]
    said = rule_refusal(await write(client, path, revived))
    assert "cannot go from cancelled (a final status) to" in said
    assert await snapshot(client, clinic.slots, clinic.place, (hold["id"],)) == before


ILLEGAL = [
    ("pending", "proposed"),
    ("booked", "pending"),
    ("booked", "proposed"),
    ("fulfilled", "booked"),
    ("noshow", "booked"),
    ("entered-in-error", "pending"),
]


@pytest.mark.parametrize(("was", "status"), ILLEGAL)
async def test_an_illegal_status_change_is_refused_naming_both(
    client: httpx.AsyncClient, was: str, status: str
) -> None:
    clinic = await open_clinic(client)
    made = await hold_of(client, clinic.slots[0], clinic.patient)
    if was != "pending":
        made = await booked_on_body(client, made)
    if was not in ("pending", "booked"):
        await put(client, {**made, "status": was})
        made = await stored(client, made["id"])
    before = await snapshot(client, clinic.slots, clinic.place, (made["id"],))
    said = rule_refusal(await write(client, "put", {**made, "status": status}))
    assert f"cannot go from {was}" in said and f"to {status}" in said
    assert await snapshot(client, clinic.slots, clinic.place, (made["id"],)) == before


@pytest.mark.parametrize("was", ["fulfilled", "noshow", "entered-in-error"])
async def test_a_final_appointment_is_not_cancelled(client: httpx.AsyncClient, was: str) -> None:
    clinic = await open_clinic(client)
    made = await booked_on(client, clinic.slots[0], clinic.patient)
    await put(client, {**made, "status": was})
    before = await snapshot(client, clinic.slots, clinic.place, (made["id"],))
    cancelled = await operate(client, f"Appointment/{made['id']}/$cancel", ("reason", "late"))
    assert f"cannot go from {was} (a final status) to cancelled" in rule_refusal(cancelled)
    assert await snapshot(client, clinic.slots, clinic.place, (made["id"],)) == before


async def test_a_booking_moves_forward_to_its_end(client: httpx.AsyncClient) -> None:
    clinic = await open_clinic(client)
    made = await booked_on(client, clinic.slots[0], clinic.patient)
    for status in ("arrived", "checked-in", "fulfilled"):
        await put(client, {**await stored(client, made["id"]), "status": status})
    assert (await stored(client, made["id"]))["status"] == "fulfilled"
