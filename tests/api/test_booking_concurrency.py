"""The rules that protect patients and practitioners, under simultaneous requests: one process
(the ASGI app, many requests in flight) and two worker processes sharing the database."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from server.config import Settings
from tests.api.scheduling_setup import VACCINE, add_slots, booking, ledger, open_practice
from tests.api.test_concurrency import skip_on_test_mongodb
from tests.factories import FHIR_JSON, create, make_delivery, make_patient, parameters
from tests.live import admin_token, live_server

RACERS = 50


async def book_all(client: httpx.AsyncClient, bookings: list[dict]) -> list[httpx.Response]:
    async def one(appointment: dict) -> httpx.Response:
        body = parameters(("appt-resource", appointment))
        return await client.post("/fhir/Appointment/$book", json=body, headers=FHIR_JSON)

    return await asyncio.gather(*(one(b) for b in bookings))


def tally(responses: list[httpx.Response]) -> Counter[int]:
    for response in responses:
        expected = "Bundle" if response.status_code == 201 else "OperationOutcome"
        assert response.json()["resourceType"] == expected, response.text
    return Counter(r.status_code for r in responses)


async def test_fifty_bookings_of_one_slot_book_it_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    skip_on_test_mongodb(settings)
    practice = await open_practice(client, patients=1)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    patients = [await create(client, make_patient(f"P{n}")) for n in range(RACERS)]
    statuses = tally(await book_all(client, [booking(slot_id, p) for p in patients]))
    assert statuses == Counter({201: 1, 409: RACERS - 1})
    found = await client.get("/fhir/Appointment", params={"slot": f"Slot/{slot_id}"})
    assert found.json()["total"] == 1


async def test_n_doses_and_three_n_bookings_book_n(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    skip_on_test_mongodb(settings)
    doses = 8
    practice = await open_practice(client, patients=1)
    await create(client, make_delivery(practice.place, doses))
    slots = await add_slots(client, practice.vaccinations, 3 * doses, minutes=5)
    responses = await book_all(client, [booking(s, practice.patients[0]) for s in slots])
    assert tally(responses) == Counter({201: doses, 409: 2 * doses})
    for response in responses:
        if response.status_code == 409:
            assert "No dose of vaccine" in response.json()["issue"][0]["diagnostics"]
    assert (await ledger(client, practice.place))[VACCINE] == {
        "delivered": doses,
        "administered": 0,
        "reserved": doses,
        "available": 0,
    }


async def test_a_six_seat_slot_takes_six_of_twenty(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    skip_on_test_mongodb(settings)
    practice = await open_practice(client, patients=1)
    (slot_id,) = await add_slots(client, practice.consultations, 1, minutes=5, seats=6)
    responses = await book_all(client, [booking(slot_id, practice.patients[0])] * 20)
    assert tally(responses) == Counter({201: 6, 409: 14})
    assert (await client.get(f"/fhir/Slot/{slot_id}")).json()["status"] == "busy"


async def test_simultaneous_holds_of_one_slot_hold_it_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    skip_on_test_mongodb(settings)
    practice = await open_practice(client, patients=1)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    body = parameters(("slot", {"reference": f"Slot/{slot_id}"}))
    responses = await asyncio.gather(
        *(client.post("/fhir/Appointment/$hold", json=body, headers=FHIR_JSON) for _ in range(20))
    )
    assert Counter(r.status_code for r in responses) == Counter({201: 1, 409: 19})


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A live `creneau serve --workers 2` on the embedded store: two processes, one database,
    and an admin token both accept."""
    data_dir = tmp_path_factory.mktemp("workers")
    with live_server(data_dir, "--workers", "2") as base:
        yield base, admin_token(data_dir, base)


async def test_two_worker_processes_book_a_slot_once_and_a_dose_once(
    two_workers: tuple[str, str],
) -> None:
    base, token = two_workers
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
        practice = await open_practice(client, patients=1)
        (slot_id,) = await add_slots(client, practice.consultations, 1)
        racing = await book_all(client, [booking(slot_id, practice.patients[0])] * 30)
        assert tally(racing) == Counter({201: 1, 409: 29})
        await create(client, make_delivery(practice.place, 3))
        slots = await add_slots(client, practice.vaccinations, 12, minutes=5)
        responses = await book_all(client, [booking(s, practice.patients[0]) for s in slots])
        assert tally(responses) == Counter({201: 3, 409: 9})
