"""What other clients read of a held slot: `busy-tentative` while live holds take its last seats,
`free` again once the server has cancelled the lapsed holds, on every worker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from server.scheduling import expiry
from server.scheduling.vocabulary import HELD_MARK
from tests.api.scheduling_setup import add_slots, booking, open_practice, refusal, slot_status
from tests.conftest import TimeTravel
from tests.factories import FHIR_JSON, appointment_in, operate, participants, ref
from tests.live import live_server


async def hold(client: httpx.AsyncClient, slot_id: str) -> dict:
    held = await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{slot_id}"}))
    assert held.status_code == 201, held.text
    return appointment_in(held)


async def sweep(app: FastAPI) -> int:
    settings = app.state.settings
    rules = expiry.server_rules(app.state.policy, settings.fhir_base, settings.limits)
    return await expiry.lapse_due(app.state.store, rules)


async def test_a_held_slot_reads_busy_tentative_until_its_hold_lapses(
    app: FastAPI, client: httpx.AsyncClient, time_travel: TimeTravel
) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    made = await hold(client, slot_id)
    assert await slot_status(client, slot_id) == "busy-tentative"
    free = await client.get("/fhir/Slot", params={"schedule": ref(practice.consultations)})
    assert [e["resource"]["status"] for e in free.json()["entry"]] == ["busy-tentative"]
    assert await sweep(app) == 0  # nothing lapsed yet
    time_travel.forward(timedelta(minutes=5, seconds=1))
    assert await sweep(app) == 1
    assert await slot_status(client, slot_id) == "free"
    lapsed = (await client.get(f"/fhir/Appointment/{made['id']}")).json()
    assert lapsed["status"] == "cancelled"
    assert lapsed["cancelationReason"]["coding"][0]["code"] == "hold-expired"
    assert await sweep(app) == 0  # once


async def test_a_lapsed_hold_frees_its_seat_before_any_sweep(
    client: httpx.AsyncClient, time_travel: TimeTravel
) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    await hold(client, slot_id)
    time_travel.forward(timedelta(minutes=5, seconds=1))
    taken = await operate(
        client, "Appointment/$book", ("appt-resource", booking(slot_id, practice.patients[1]))
    )
    assert taken.status_code == 201, taken.text
    assert await slot_status(client, slot_id) == "busy"


async def test_seats_left_keep_a_slot_free_and_a_booked_hold_makes_it_busy(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1, seats=2)
    first = await hold(client, slot_id)
    assert await slot_status(client, slot_id) == "free"
    await hold(client, slot_id)
    assert await slot_status(client, slot_id) == "busy-tentative"
    finished = {
        **first,
        "participant": first["participant"] + participants(ref(practice.patients[0])),
    }
    booked = await operate(client, "Appointment/$book", ("appt-resource", finished))
    assert booked.status_code == 201, booked.text
    assert await slot_status(client, slot_id) == "busy-tentative"  # one booked, one held
    await operate(client, f"Appointment/{first['id']}/$cancel")
    assert await slot_status(client, slot_id) == "free"  # one hold, two seats


async def test_the_held_mark_is_the_servers(
    app: FastAPI, client: httpx.AsyncClient, time_travel: TimeTravel
) -> None:
    practice = await open_practice(client)
    held_slot, owners_slot = await add_slots(client, practice.consultations, 2)
    await hold(client, held_slot)
    # the owner writes the held slot back as free: it stays held
    body = (await client.get(f"/fhir/Slot/{held_slot}")).json()
    await client.put(f"/fhir/Slot/{held_slot}", json={**body, "status": "free"}, headers=FHIR_JSON)
    assert await slot_status(client, held_slot) == "busy-tentative"
    # a forged mark is dropped: this busy-tentative is the owner's, not bookable, kept as it is
    body = (await client.get(f"/fhir/Slot/{owners_slot}")).json()
    forged = {**body, "status": "busy-tentative", "meta": {"tag": [HELD_MARK]}}
    stored = await client.put(f"/fhir/Slot/{owners_slot}", json=forged, headers=FHIR_JSON)
    assert "tag" not in stored.json()["meta"]
    refused = await operate(
        client, "Appointment/$book", ("appt-resource", booking(owners_slot, practice.patients[0]))
    )
    assert "busy-tentative" in refusal(refused)
    time_travel.forward(timedelta(minutes=5, seconds=1))
    await sweep(app)
    assert await slot_status(client, held_slot) == "free"
    assert await slot_status(client, owners_slot) == "busy-tentative"


@pytest.fixture
def quick_holds() -> Iterator[None]:
    """Holds of 2 s, swept every 0.3 s, in the live server started next."""
    saved = {k: os.environ.get(k) for k in ("CRENEAU_HOLD_SECONDS", "CRENEAU_HOLD_SWEEP_SECONDS")}
    os.environ.update(CRENEAU_HOLD_SECONDS="2", CRENEAU_HOLD_SWEEP_SECONDS="0.3")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


async def test_two_workers_free_a_lapsed_hold(tmp_path: Path, quick_holds: None) -> None:
    """A hold taken through one worker lapses; every worker then reads the slot free (fresh
    connections, spread over both processes)."""
    with live_server(tmp_path, "--sandbox", "--workers", "2") as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            practice = await open_practice(client, patients=1)
            (slot_id,) = await add_slots(client, practice.consultations, 1)
            made = await hold(client, slot_id)
            assert await slot_status(client, slot_id) == "busy-tentative"
        await asyncio.sleep(3.5)
        statuses = []
        for _ in range(8):
            async with httpx.AsyncClient(base_url=base, timeout=30) as fresh:
                statuses.append(await slot_status(fresh, slot_id))
        assert statuses == ["free"] * 8
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            lapsed = (await client.get(f"/fhir/Appointment/{made['id']}")).json()
        assert lapsed["status"] == "cancelled"
