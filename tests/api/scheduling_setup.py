"""A small practice to schedule in: a practitioner at a location, a consultation Schedule and a
vaccination Schedule, slots from tomorrow, patients. Shared by the scheduling tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.factories import (
    COMIRNATY,
    CONSULTATION,
    SLOT_CAPACITY,
    create,
    fresh_rpps,
    make_location,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    make_vaccination_schedule,
    participants,
    ref,
)

TOMORROW = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
WINDOW = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=2)).isoformat()}
VACCINE = f"{COMIRNATY['system']}|{COMIRNATY['code']}"


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
    practitioner = await create(client, make_practitioner(fresh_rpps()))
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


def booking(slot_id: str, patient: dict, **extra: object) -> dict:
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": participants(ref(patient)),
        **extra,
    }


async def slot_status(client: httpx.AsyncClient, slot_id: str) -> str:
    status: str = (await client.get(f"/fhir/Slot/{slot_id}")).json()["status"]
    return status


def refusal(response: httpx.Response, status: int = 409) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(issue.get("diagnostics", "") for issue in body["issue"])


async def ledger(client: httpx.AsyncClient, place: str) -> dict[str, dict[str, Any]]:
    """{vaccine token: {delivered, administered, reserved, available}} from $doses."""
    response = await client.get(f"/fhir/{place}/$doses")
    assert response.status_code == 200, response.text
    rows = {}
    for parameter in response.json().get("parameter", []):
        parts = {p["name"]: p for p in parameter["part"]}
        code = parts.pop("code")["valueCoding"]
        rows[f"{code['system']}|{code['code']}"] = {k: v["valueInteger"] for k, v in parts.items()}
    return rows


async def find(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/fhir/Appointment/$find", params={**WINDOW, **params})
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    return bundle


def slots_of(bundle: dict[str, Any]) -> list[str]:
    return [
        e["resource"]["slot"][0]["reference"].split("/")[1]
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "match"
    ]
