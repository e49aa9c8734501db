"""A storm of bookings, holds and cancels against a live multi-worker server whose worker
processes are killed with SIGKILL while it runs, then the checks that nothing acknowledged was
lost and no rule was broken. Shared by tests/api/test_faults.py and bench/faults.py (larger)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.api.scheduling_setup import VACCINE, Practice, add_slots, booking, ledger, open_practice
from tests.factories import FHIR_JSON, create, make_delivery, parameters

HELD_OR_BOOKED = ("pending", "booked")


@dataclass
class Storm:
    """What the server acknowledged during the storm."""

    booked: set[str] = field(default_factory=set)  # Appointment ids answered 201
    cancelled: set[str] = field(default_factory=set)  # cancels answered 200
    answers: Counter[str] = field(default_factory=Counter)  # status codes, "lost" for no answer


@dataclass
class Scene:
    practice: Practice
    seats: dict[str, int]  # slot id → capacity
    vaccination_slots: list[str]
    doses: int


def worker_pids(server_pid: int) -> list[int]:
    """The worker processes `creneau serve --workers N` started (Linux /proc)."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split()
    return [int(pid) for pid in children]


async def set_scene(client: httpx.AsyncClient, slots: int, doses: int, patients: int) -> Scene:
    practice = await open_practice(client, patients=patients)
    consultations = await add_slots(client, practice.consultations, slots, seats=2)
    await create(client, make_delivery(practice.place, doses))
    vaccinations = await add_slots(client, practice.vaccinations, slots, minutes=5)
    seats = {**dict.fromkeys(consultations, 2), **dict.fromkeys(vaccinations, 1)}
    return Scene(practice, seats, vaccinations, doses)


async def blow(
    client: httpx.AsyncClient,
    scene: Scene,
    server_pid: int,
    *,
    rounds: int,
    per_round: int,
    seed: int = 7,
) -> Storm:
    """`rounds` bursts of `per_round` concurrent requests; a worker is killed in each burst."""
    chance, storm = random.Random(seed), Storm()
    for _ in range(rounds):
        requests = [_one(client, scene, storm, chance) for _ in range(per_round)]
        await asyncio.gather(*requests, _kill_a_worker(server_pid, chance))
    return storm


async def _kill_a_worker(server_pid: int, chance: random.Random) -> None:
    await asyncio.sleep(chance.uniform(0.05, 0.3))
    pids = worker_pids(server_pid)
    if pids:
        os.kill(chance.choice(pids), signal.SIGKILL)


async def _one(
    client: httpx.AsyncClient, scene: Scene, storm: Storm, chance: random.Random
) -> None:
    slot = chance.choice(list(scene.seats))
    patient = chance.choice(scene.practice.patients)
    draw = chance.random()
    try:
        if draw < 0.2 and storm.booked - storm.cancelled:
            victim = chance.choice(sorted(storm.booked - storm.cancelled))
            reason = parameters(("reason", "Storm"))
            response = await client.post(
                f"/fhir/Appointment/{victim}/$cancel", json=reason, headers=FHIR_JSON
            )
            if response.status_code == 200:
                storm.cancelled.add(victim)
        elif draw < 0.35:
            body = parameters(("slot", {"reference": f"Slot/{slot}"}))
            response = await client.post("/fhir/Appointment/$hold", json=body, headers=FHIR_JSON)
        else:
            body = parameters(("appt-resource", booking(slot, patient)))
            response = await client.post("/fhir/Appointment/$book", json=body, headers=FHIR_JSON)
            if response.status_code == 201:
                storm.booked.add(response.json()["entry"][0]["resource"]["id"])
        storm.answers[str(response.status_code)] += 1
    except httpx.TransportError:
        storm.answers["lost"] += 1  # the worker died with the request: not acknowledged


async def broken_rules(client: httpx.AsyncClient, scene: Scene, storm: Storm) -> list[str]:
    """Every way the store disagrees with what was acknowledged or with the rules; [] if none."""
    problems: list[str] = []
    appointments = await _every(client, "Appointment", {"_count": "500"})
    by_id = {a["id"]: a for a in appointments}
    for appointment_id in sorted(storm.booked):
        status = by_id.get(appointment_id, {}).get("status")
        expected = ("cancelled",) if appointment_id in storm.cancelled else ("booked", "cancelled")
        if status not in expected:
            problems.append(f"Appointment/{appointment_id} acknowledged, now {status}")
    taken: Counter[str] = Counter()
    for appointment in appointments:
        if appointment["status"] in HELD_OR_BOOKED:
            for slot in appointment.get("slot", []):
                taken[slot["reference"].split("/")[1]] += 1
    for slot_id, seats in scene.seats.items():
        if taken[slot_id] > seats:
            problems.append(f"Slot/{slot_id}: {taken[slot_id]} takers for {seats} seats")
    reserved = sum(taken[s] for s in scene.vaccination_slots)
    doses = (await ledger(client, scene.practice.place))[VACCINE]
    if doses["reserved"] != reserved or doses["available"] != scene.doses - reserved:
        problems.append(f"dose ledger {doses}, recount: {reserved} reserved of {scene.doses}")
    if doses["available"] < 0:
        problems.append(f"{doses['available']} doses available")
    return problems


async def _every(client: httpx.AsyncClient, kind: str, params: dict[str, str]) -> list[Any]:
    found: list[Any] = []
    response = await client.get(f"/fhir/{kind}", params=params)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        found += [e["resource"] for e in bundle.get("entry", [])]
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            return found
        response = await client.get(following[0])
