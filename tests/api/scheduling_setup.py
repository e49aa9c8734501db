"""A small practice to schedule in: a practitioner at a location, a consultation Schedule and a
vaccination Schedule, slots from tomorrow, patients. Shared by the scheduling tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.factories import (
    CONSULTATION,
    SLOT_CAPACITY,
    create,
    make_location,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    make_vaccination_schedule,
    ref,
)

TOMORROW = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)


@dataclass
class Practice:
    practitioner: dict[str, Any]
    location: dict[str, Any]
    consultations: dict[str, Any]  # Schedule
    vaccinations: dict[str, Any]  # Schedule
    patients: list[dict[str, Any]]

    @property
    def place(self) -> str:
        return ref(self.location)


async def open_practice(client: httpx.AsyncClient, patients: int = 3) -> Practice:
    practitioner = await create(client, make_practitioner())
    location = await create(client, make_location())
    actors = (ref(practitioner), ref(location))
    consultations = await create(
        client,
        {
            **make_schedule(actors[0], serviceType=[CONSULTATION]),
            "actor": [{"reference": a} for a in actors],
        },
    )
    vaccinations = await create(client, make_vaccination_schedule(*actors))
    people = [await create(client, make_patient(f"Patient{n}")) for n in range(patients)]
    return Practice(practitioner, location, consultations, vaccinations, people)


async def add_slots(
    client: httpx.AsyncClient,
    schedule: dict[str, Any],
    count: int,
    *,
    first: datetime = TOMORROW,
    minutes: int = 15,
    seats: int | None = None,
) -> list[str]:
    """`count` consecutive free Slots; their ids."""
    extra: dict[str, Any] = {}
    if seats is not None:
        extra["extension"] = [{"url": SLOT_CAPACITY, "valueInteger": seats}]
    ids = []
    for n in range(count):
        start = first + timedelta(minutes=minutes * n)
        slot = await create(client, make_slot(ref(schedule), start, minutes, **extra))
        ids.append(slot["id"])
    return ids
