"""The conflict matrix: every pair of operations that decide on a common fact writes a common
document, so on MongoDB one of two concurrent ones is aborted and run again (see
`tests.conflicts` and docs/operations.md). Each pair runs from one snapshot, on both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.access_setup import grant, open_owner
from tests.api.rule_paths_setup import open_clinic
from tests.api.scheduling_setup import add_slots, booking, open_practice
from tests.conflicts import Footprint, ProbingStore
from tests.conftest import AppClient, TimeTravel
from tests.factories import (
    COMIRNATY,
    FHIR_JSON,
    SLOT_CAPACITY,
    appointment_in,
    create,
    make_patient,
    operate,
    participants,
    ref,
)

Request = Callable[[], Awaitable[httpx.Response]]


@dataclass
class Pair:
    """Two requests that would run concurrently; `between` runs after the first is probed (a
    clock moved: the second decides later, from the same snapshot)."""

    first: Request
    second: Request
    between: Callable[[], None] = lambda: None


@dataclass
class World:
    client: httpx.AsyncClient  # an admin client
    app_client: AppClient
    time_travel: TimeTravel


@pytest.fixture
async def probes(app: FastAPI) -> AsyncIterator[ProbingStore]:
    store = ProbingStore(app.state.store)
    app.state.store = store
    yield store
    app.state.store = store.inner


def call(http: httpx.AsyncClient, path: str, *pairs: tuple[str, Any]) -> Request:
    return lambda: operate(http, path, *pairs)


def book(http: httpx.AsyncClient, slot_id: str, patient: dict[str, Any]) -> Request:
    return call(http, "Appointment/$book", ("appt-resource", booking(slot_id, patient)))


def hold(http: httpx.AsyncClient, slot_id: str) -> Request:
    return call(http, "Appointment/$hold", ("slot", {"reference": f"Slot/{slot_id}"}))


def post(http: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> Request:
    url = f"/fhir/{resource['resourceType']}"
    return lambda: http.post(url, json=resource, headers={**FHIR_JSON, **headers})


def delete(http: httpx.AsyncClient, reference: str) -> Request:
    return lambda: http.delete(f"/fhir/{reference}")


async def booked(http: httpx.AsyncClient, slot_id: str, patient: dict[str, Any]) -> dict[str, Any]:
    response = await book(http, slot_id, patient)()
    assert response.status_code == 201, response.text
    return appointment_in(response)


async def held(http: httpx.AsyncClient, slot_id: str) -> dict[str, Any]:
    response = await hold(http, slot_id)()
    assert response.status_code == 201, response.text
    return appointment_in(response)


def finish(http: httpx.AsyncClient, hold: dict[str, Any], patient: dict[str, Any]) -> Request:
    """The holder books its hold, naming its patient."""
    body = {**hold, "participant": hold["participant"] + participants(ref(patient))}
    return call(http, "Appointment/$book", ("appt-resource", body))


def put(http: httpx.AsyncClient, resource: dict[str, Any]) -> Request:
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    return lambda: http.put(url, json=resource, headers=FHIR_JSON)


async def read(http: httpx.AsyncClient, reference: str) -> dict[str, Any]:
    body: dict[str, Any] = (await http.get(f"/fhir/{reference}")).json()
    return body


def lapse(world: World) -> Callable[[], None]:
    return lambda: world.time_travel.forward(timedelta(minutes=5, seconds=1))


# The matrix: each builds its data (committed), then names the two requests.


async def book_book(world: World) -> Pair:
    practice = await open_practice(world.client)
    (slot,) = await add_slots(world.client, practice.consultations, 1)
    first, second = practice.patients[:2]
    return Pair(book(world.client, slot, first), book(world.client, slot, second))


async def book_hold(world: World) -> Pair:
    practice = await open_practice(world.client)
    (slot,) = await add_slots(world.client, practice.consultations, 1)
    return Pair(book(world.client, slot, practice.patients[0]), hold(world.client, slot))


async def book_hold_expiry(world: World) -> Pair:
    """The holder books its hold just before it lapses; another booking counts it as lapsed."""
    practice = await open_practice(world.client)
    (slot,) = await add_slots(world.client, practice.consultations, 1)
    hold = await held(world.client, slot)
    return Pair(
        finish(world.client, hold, practice.patients[0]),
        book(world.client, slot, practice.patients[1]),
        lapse(world),
    )


async def book_hold_expiry_doses(world: World) -> Pair:
    """The same for the last dose: a hold on one slot, a booking of another counting it lapsed."""
    clinic = await open_clinic(world.client, slots=2, doses=1)
    hold = await held(world.client, clinic.slots[0])
    other = await create(world.client, make_patient("Roux"))
    return Pair(
        finish(world.client, hold, clinic.patient),
        book(world.client, clinic.slots[1], other),
        lapse(world),
    )


async def book_slot_shrink(world: World) -> Pair:
    """Three seats, one booked: a second booking while the owner cuts the slot to one seat."""
    practice = await open_practice(world.client)
    (slot,) = await add_slots(world.client, practice.consultations, 1, seats=3)
    await booked(world.client, slot, practice.patients[0])
    body = await read(world.client, f"Slot/{slot}")
    one_seat = {**body, "status": "busy", "extension": [{"url": SLOT_CAPACITY, "valueInteger": 1}]}
    return Pair(book(world.client, slot, practice.patients[1]), put(world.client, one_seat))


async def book_slot_delete(world: World) -> Pair:
    """Two free seats: one booked while the owner deletes the slot (a booking stranded)."""
    practice = await open_practice(world.client)
    (slot,) = await add_slots(world.client, practice.consultations, 1, seats=2)
    return Pair(
        book(world.client, slot, practice.patients[0]), delete(world.client, f"Slot/{slot}")
    )


async def book_cancel(world: World) -> Pair:
    """Two seats, one booked: the last seat booked (the slot goes busy) while the first
    booking is cancelled (the slot must stay free)."""
    practice = await open_practice(world.client)
    (slot,) = await add_slots(world.client, practice.consultations, 1, seats=2)
    made = await booked(world.client, slot, practice.patients[0])
    cancel = call(world.client, f"Appointment/{made['id']}/$cancel", ("reason", "ill"))
    return Pair(book(world.client, slot, practice.patients[1]), cancel)


async def book_delivery_correction(world: World) -> Pair:
    """The last dose booked while its delivery is marked entered in error."""
    clinic = await open_clinic(world.client, slots=1, doses=1)
    wrong = {**clinic.delivery, "status": "entered-in-error"}
    return Pair(book(world.client, clinic.slots[0], clinic.patient), put(world.client, wrong))


async def book_immunization(world: World) -> Pair:
    """The last dose booked while a walk-in's completed Immunization uses it."""
    clinic = await open_clinic(world.client, slots=1, doses=1)
    walk_in = await create(world.client, make_patient("Petit"))
    immunization = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [COMIRNATY]},
        "patient": {"reference": ref(walk_in)},
        "occurrenceDateTime": "2026-11-20T10:00:00+01:00",
        "location": {"reference": clinic.place},
    }
    record = post(world.client, immunization)
    return Pair(book(world.client, clinic.slots[0], clinic.patient), record)


async def book_quota(world: World) -> Pair:
    """An app with one booking a day left books two slots at once."""
    owner = await open_owner(world.client, world.app_client, "Quota", slots=2)
    app = await world.app_client("capped")
    granted = await grant(owner.agenda, owner.ref, app.client_id, "book", quota=1)  # type: ignore[attr-defined]
    assert granted.status_code in (200, 201), granted.text
    patient = await create(app, make_patient())
    return Pair(book(app, owner.slots[0], patient), book(app, owner.slots[1], patient))


async def holds_of_one_client(world: World) -> Pair:
    """One client's holds on two slots: both count its live holds against its cap."""
    practice = await open_practice(world.client)
    one, two = await add_slots(world.client, practice.consultations, 2)
    return Pair(hold(world.client, one), hold(world.client, two))


def create_if_none(world: World, condition: str) -> Request:
    identifier = {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1870375123456"}
    patient = {**make_patient(), "identifier": [identifier]}
    return post(world.client, patient, **{"If-None-Exist": condition})


async def conditional_creates(world: World) -> Pair:
    condition = "identifier=urn:oid:1.2.250.1.213.1.4.8|1870375123456"
    return Pair(create_if_none(world, condition), create_if_none(world, condition))


async def conditional_creates_spelled_apart(world: World) -> Pair:
    """One condition, two spellings: parameters reordered and percent-encoded."""
    plain = "identifier=urn:oid:1.2.250.1.213.1.4.8|1870375123456&_count=1"
    encoded = "_count=1&identifier=urn%3Aoid%3A1.2.250.1.213.1.4.8%7C1870375123456"
    return Pair(create_if_none(world, plain), create_if_none(world, encoded))


async def creates_of_one_national_identifier(world: World) -> Pair:
    """Two Practitioners with one RPPS number: each finds no other, only one may be created."""
    identifier = {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000601"}
    practitioner = {"resourceType": "Practitioner", "identifier": [identifier]}
    return Pair(post(world.client, practitioner), post(world.client, practitioner))


MATRIX = {
    "book/book": book_book,
    "book/hold": book_hold,
    "book/hold-expiry": book_hold_expiry,
    "book/hold-expiry (doses)": book_hold_expiry_doses,
    "book/slot-shrink": book_slot_shrink,
    "book/slot-delete": book_slot_delete,
    "book/cancel": book_cancel,
    "book/delivery-correction": book_delivery_correction,
    "book/immunization": book_immunization,
    "book/quota": book_quota,
    "hold/hold (one client's cap)": holds_of_one_client,
    "conditional-create/conditional-create": conditional_creates,
    "conditional-create/conditional-create (spelled apart)": conditional_creates_spelled_apart,
    "create/create (national identifier)": creates_of_one_national_identifier,
}


async def footprints(probes: ProbingStore, pair: Pair) -> tuple[Footprint, Footprint]:
    first = await probes.probe(pair.first)
    pair.between()
    second = await probes.probe(pair.second)
    return first, second


@pytest.mark.parametrize("name", MATRIX)
async def test_decisions_on_a_common_fact_write_a_common_document(
    name: str,
    client: httpx.AsyncClient,
    app_client: AppClient,
    time_travel: TimeTravel,
    probes: ProbingStore,
) -> None:
    pair = await MATRIX[name](World(client, app_client, time_travel))
    first, second = await footprints(probes, pair)
    assert first.depends_on(second) or second.depends_on(first), "the pair shares no fact"
    assert first.common_writes(second), (
        f"{name}: both would commit under snapshot isolation; "
        f"writes {sorted(first.writes)} and {sorted(second.writes)}"
    )


async def test_bookings_in_two_practices_share_no_document(
    client: httpx.AsyncClient, probes: ProbingStore
) -> None:
    """The other side: unrelated bookings never serialize on a common document."""
    here, there = await open_practice(client), await open_practice(client)
    (one,) = await add_slots(client, here.consultations, 1)
    (two,) = await add_slots(client, there.consultations, 1)
    first = await probes.probe(book(client, one, here.patients[0]))
    second = await probes.probe(book(client, two, there.patients[0]))
    assert first.committed and second.committed
    assert not first.common_writes(second), sorted(first.common_writes(second))
