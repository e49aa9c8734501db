"""An Appointment may take several adjacent slots of one Schedule (a long consultation): booked
all or none, freed all together."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from server.config import Settings
from tests.api.scheduling_setup import add_slots, booking, open_practice, refusal, slot_status
from tests.api.test_concurrency import skip_on_test_mongodb
from tests.factories import appointment_in, operate


def long_booking(slot_ids: list[str], patient: dict[str, Any]) -> dict[str, Any]:
    return {**booking(slot_ids[0], patient), "slot": [{"reference": f"Slot/{s}"} for s in slot_ids]}


async def book(client: httpx.AsyncClient, slot_ids: list[str], patient: dict) -> httpx.Response:
    return await operate(
        client, "Appointment/$book", ("appt-resource", long_booking(slot_ids, patient))
    )


async def test_adjacent_slots_are_booked_and_freed_together(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    first, second, third = await add_slots(client, practice.consultations, 3)
    made = await book(client, [second, first], practice.patients[0])
    assert made.status_code == 201, made.text
    appointment = appointment_in(made)
    assert [await slot_status(client, s) for s in (first, second, third)] == [
        "busy",
        "busy",
        "free",
    ]
    cancelled = await operate(client, f"Appointment/{appointment['id']}/$cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert [await slot_status(client, s) for s in (first, second)] == ["free", "free"]


async def test_slots_with_a_gap_or_of_two_schedules_are_refused(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    first, _, third = await add_slots(client, practice.consultations, 3)
    (other,) = await add_slots(client, practice.vaccinations, 1)
    for slots in ([first, third], [first, other]):
        assert "adjacent" in refusal(await book(client, slots, practice.patients[0]), 422)
        assert await slot_status(client, first) == "free"


async def test_all_or_none(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    first, second = await add_slots(client, practice.consultations, 2)
    taken = await operate(
        client, "Appointment/$book", ("appt-resource", booking(second, practice.patients[1]))
    )
    assert taken.status_code == 201, taken.text
    refusal(await book(client, [first, second], practice.patients[0]))
    assert await slot_status(client, first) == "free"


async def test_overlapping_long_bookings_at_once_one_wins(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    skip_on_test_mongodb(settings)
    practice = await open_practice(client)
    slots = await add_slots(client, practice.consultations, 3)
    answers = await asyncio.gather(
        book(client, slots[:2], practice.patients[0]),
        book(client, slots[1:], practice.patients[1]),
    )
    assert Counter(a.status_code for a in answers) == Counter({201: 1, 409: 1})
    statuses = [await slot_status(client, s) for s in slots]
    assert statuses.count("busy") == 2 and statuses[1] == "busy"
