"""Bounded work in scheduling: `$find` reads the slots its filters allow, not every slot of the
window; a place's dose ledger counts live holds without listing pending Appointments; one client
holds at most `holds_per_client` slots at once. Work is measured as rows read, never as time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.config import Settings
from server.fhir.indexing import extract
from server.fhir.values import now_instant
from server.store import searching, writes
from server.store.base import Version
from tests.api.scheduling_setup import (
    TOMORROW,
    VACCINE,
    add_slots,
    booking,
    ledger,
    open_practice,
    refusal,
    slots_of,
)
from tests.conftest import AppClient, TimeTravel
from tests.factories import (
    FHIR_JSON,
    SERVICE_TYPE,
    appointment_in,
    create,
    make_delivery,
    make_location,
    make_schedule,
    make_slot,
    make_vaccination_schedule,
    operate,
    participants,
    ref,
)

FIND_SLOTS, HOLDS_PER_CLIENT = 100, 3
RARE = {"coding": [{"system": SERVICE_TYPE, "code": "168", "display": "Travel immunisation"}]}


def volume(settings: Settings) -> int:
    """How many unrelated resources to store: 2,000 on SQLite; fewer on nx-27017, which scans
    its collections on every query (what is counted here, rows read, does not depend on it)."""
    return 400 if settings.mongodb_uri else 2_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings, with the caps these tests reach set low."""
    limits = replace(settings.limits, find_slots=FIND_SLOTS, holds_per_client=HOLDS_PER_CLIENT)
    return replace(settings, limits=limits)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Resources read by searches (the store's or a transaction's), by type."""
    counted: Counter[str] = Counter()
    search = searching.search

    async def counting(*args: Any, **kwargs: Any) -> searching.SearchResult:
        result = await search(*args, **kwargs)
        for version in result.page.versions:
            counted[version.type] += 1
        return result

    monkeypatch.setattr(searching, "search", counting)
    yield counted


async def store_all(app: FastAPI, resources: list[dict[str, Any]]) -> None:
    """Test data stored as it is, in one trip: the volume these tests need would take minutes to
    write one by one through the rules on nx-27017."""
    own_base, stored = app.state.settings.fhir_base, []
    for resource in resources:
        meta = {**resource.get("meta", {}), "versionId": "1", "lastUpdated": now_instant()}
        body = {**resource, "id": writes.new_id(), "meta": meta}
        version = Version(body["resourceType"], body["id"], 1, meta["lastUpdated"], body, "POST")
        stored.append((version, extract(body, own_base)))
    async with app.state.store.transaction() as tx:
        await tx.put_new(stored)


async def find_in(client: httpx.AsyncClient, **params: Any) -> list[str]:
    """The slots `$find` offers in the next two weeks."""
    window = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=14)).isoformat()}
    response = await client.get("/fhir/Appointment/$find", params={**window, **params})
    assert response.status_code == 200, response.text
    return slots_of(response.json())


async def test_find_reads_the_slots_its_filters_allow_not_the_window(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, reads: Counter[str]
) -> None:
    practice = await open_practice(client, patients=0)
    travel = await create(client, make_schedule(practice.place, serviceType=[RARE]))
    rare = await add_slots(client, travel, 3, first=TOMORROW + timedelta(days=8))
    # 2,000 free vaccination slots elsewhere, earlier in the window; no dose there: not offered
    elsewhere = await create(client, make_location("Vaccinodrome", "69007"))
    crowd = await create(client, make_vaccination_schedule(ref(elsewhere)))
    await store_all(
        app,
        [
            make_slot(ref(crowd), TOMORROW + timedelta(minutes=5 * n), 5)
            for n in range(volume(settings))
        ],
    )

    reads.clear()
    assert await find_in(client, **{"service-type": "168"}) == rare
    assert reads["Slot"] <= 30
    reads.clear()
    assert await find_in(client, location=practice.place, **{"service-type": "168"}) == rare
    assert reads["Slot"] <= 30
    # without a filter, the window is read in start order, at most find_slots slots of it
    reads.clear()
    assert await find_in(client) == []
    assert 0 < reads["Slot"] <= FIND_SLOTS
    # once doses arrive, as many as _count asks, read from the start of the time line
    await create(client, make_delivery(ref(elsewhere), 10))
    reads.clear()
    assert len(await find_in(client, location=ref(elsewhere), _count="4")) == 4
    assert reads["Slot"] <= 30
    reads.clear()
    assert len(await find_in(client, _count="4")) == 4
    assert reads["Slot"] <= 30


async def test_pending_appointments_without_slots_cost_the_ledger_nothing(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, reads: Counter[str]
) -> None:
    practice = await open_practice(client, patients=1)
    await create(client, make_delivery(practice.place, 5))
    first, second = await add_slots(client, practice.vaccinations, 2)
    # a pending Appointment at the place without a slot, as any client may write, and 2,000 more
    pending = await create(
        client,
        {
            "resourceType": "Appointment",
            "status": "pending",
            "start": (TOMORROW + timedelta(days=3)).isoformat(),
            "end": (TOMORROW + timedelta(days=3, minutes=15)).isoformat(),
            "participant": participants(practice.place),
        },
    )
    copy = {k: v for k, v in pending.items() if k != "id"}
    await store_all(app, [copy] * volume(settings))

    reads.clear()
    assert (await ledger(client, practice.place))[VACCINE]["available"] == 5
    held = await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{first}"}))
    assert held.status_code == 201, held.text
    made = booking(second, practice.patients[0])
    booked = await operate(client, "Appointment/$book", ("appt-resource", made))
    assert booked.status_code == 201, booked.text
    assert reads["Appointment"] <= 10
    assert (await ledger(client, practice.place))[VACCINE] == {
        "delivered": 5,
        "administered": 0,
        "reserved": 2,
        "available": 3,
    }


async def test_the_ledger_stays_exact_as_holds_lapse_are_booked_or_cancelled(
    app: FastAPI, client: httpx.AsyncClient, time_travel: TimeTravel
) -> None:
    practice = await open_practice(client, patients=1)
    patient = participants(ref(practice.patients[0]))
    await create(client, make_delivery(practice.place, 3))
    slots = await add_slots(client, practice.vaccinations, 4)

    async def doses() -> list[int]:
        balance = (await ledger(client, practice.place))[VACCINE]
        return [balance[k] for k in ("delivered", "administered", "reserved", "available")]

    lapsing = appointment_in(await hold(client, slots[0]))
    booked = appointment_in(await book(client, booking(slots[1], practice.patients[0])))
    dropped = appointment_in(await hold(client, slots[2]))
    assert await doses() == [3, 0, 3, 0]
    assert "No dose of vaccine" in refusal(
        await book(client, booking(slots[3], practice.patients[0]))
    )
    await operate(client, f"Appointment/{dropped['id']}/$cancel", ("reason", "gave up"))
    assert await doses() == [3, 0, 2, 1]
    time_travel.forward(app.state.policy.hold + timedelta(seconds=1))
    assert await doses() == [3, 0, 1, 2]  # the lapsed hold keeps nothing, nothing written
    # the lapsed hold booked afresh (its slot is still free): one dose, counted once
    again = {**lapsing, "participant": lapsing["participant"] + patient}
    assert (await book(client, again)).status_code == 201
    assert await doses() == [3, 0, 2, 1]
    # a live hold booked: its dose moves from the hold to the booking
    live = appointment_in(await hold(client, slots[2]))
    assert await doses() == [3, 0, 3, 0]
    done = await book(client, {**live, "participant": live["participant"] + patient})
    assert done.status_code == 201, done.text
    assert await doses() == [3, 0, 3, 0]
    await operate(client, f"Appointment/{booked['id']}/$cancel", ("reason", "moved away"))
    assert await doses() == [3, 0, 2, 1]


async def test_a_client_holds_at_most_holds_per_client_slots_at_once(
    app: FastAPI, client: httpx.AsyncClient, app_client: AppClient, time_travel: TimeTravel
) -> None:
    practice = await open_practice(client, patients=1)
    slots = await add_slots(client, practice.consultations, 6)
    held = [appointment_in(await hold(client, s)) for s in slots[:HOLDS_PER_CLIENT]]
    over = await hold(client, slots[3])
    assert "holds_per_client" in refusal(over, 429)
    assert 0 < int(over.headers["retry-after"]) <= app.state.policy.hold.total_seconds()
    rest = {**booking(slots[3], practice.patients[0]), "status": "pending"}
    response = await client.post("/fhir/Appointment", json=rest, headers=FHIR_JSON)
    refusal(response, 429)  # a hold written with REST counts the same
    # another client has its own places
    other = await app_client("other-app", admin=True)
    assert (await hold(other, slots[3])).status_code == 201
    # a hold cancelled or booked makes room; so does one that lapses, without any write
    await operate(client, f"Appointment/{held[0]['id']}/$cancel", ("reason", "gave up"))
    assert (await hold(client, slots[4])).status_code == 201
    patient = participants(ref(practice.patients[0]))
    assert (
        await book(client, {**held[1], "participant": held[1]["participant"] + patient})
    ).status_code == 201
    assert (await hold(client, slots[5])).status_code == 201
    refusal(await hold(client, slots[0]), 429)
    time_travel.forward(app.state.policy.hold + timedelta(seconds=1))
    assert (await hold(client, slots[0])).status_code == 201


async def hold(client: httpx.AsyncClient, slot_id: str) -> httpx.Response:
    return await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{slot_id}"}))


async def book(client: httpx.AsyncClient, appointment: dict[str, Any]) -> httpx.Response:
    return await operate(client, "Appointment/$book", ("appt-resource", appointment))
