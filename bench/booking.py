"""`$book` benchmark on the embedded store, over HTTP, the server on one worker process per core.

Measures bookings/s and p50/p99 latency of `POST /fhir/Appointment/$book`, as bench/rest.py
measures (same server, same client, same server CPU accounting), in two runs:

1. distinct slots: SLOTS free Slots over SCHEDULES Schedules, CONCURRENCY requests in flight,
   each on a slot of its own: every answer should be 201;
2. contended slots: RACERS requests fired together at one slot, slot after slot, each for a
   different Patient: exactly one 201 and RACERS - 1 409s (business-rule) per slot. Winners
   and losers are timed together.

Every answer is counted by status (and issue code): a 5xx, a timeout or a store-busy 503 shows
up in the counts, and the server's stderr is printed. The script exits non-zero when a distinct
slot was not booked, or a contended slot did not end with exactly one booked Appointment
(counted both from the answers and by searching the server afterwards).

    python bench/booking.py [--slots 2000] [--contended 100] [--racers 20] [--server-log FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rest import (
    CONCURRENCY,
    FHIR_JSON,
    free_port,
    report,
    run_concurrently,
    server_cpu_seconds,
    start_server,
)

SCHEDULES = 20
PATIENTS = 100
# Bookable slots must lie in the future: the first one starts tomorrow at 08:00 UTC.
START = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
Outcomes = defaultdict[str, list[str]]  # slot id → what each $book on it answered


async def main(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="creneau-bench-"))
    port, workers = free_port(), os.cpu_count() or 1
    in_flight = max(CONCURRENCY, args.racers)
    log_path = args.server_log or folder / "server-stderr.log"
    with log_path.open("wb") as log:
        server = start_server(folder, port, workers, stderr=log)
    print(
        f"server: embedded SQLite store, {workers} worker processes; clients from one process "
        f"on the same machine"
    )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/fhir",
            limits=httpx.Limits(max_connections=in_flight),
            timeout=60,
        ) as client:
            problems = await benchmark(client, server, args)
    finally:
        server.terminate()
        server.wait(timeout=30)
        stderr = log_path.read_text(errors="replace")
        shutil.rmtree(folder, ignore_errors=True)
    if problems:
        print("server stderr (last 40 lines):", *stderr.splitlines()[-40:], sep="\n  ")
        print("FAILED:", *problems, sep="\n  ")
    return 1 if problems else 0


async def benchmark(
    client: httpx.AsyncClient, server: subprocess.Popen[bytes], args: argparse.Namespace
) -> list[str]:
    began = time.perf_counter()
    patients = await seed_patients(client)
    per_schedule = -(-args.slots // SCHEDULES)
    distinct = [s for n in range(SCHEDULES) for s in await seed_schedule(client, n, per_schedule)]
    contended = await seed_schedule(client, SCHEDULES, args.contended)
    print(
        f"seed: {len(patients)} Patients, {SCHEDULES + 1} Schedules (a Practitioner each), "
        f"{len(distinct) + len(contended)} free Slots from {START:%Y-%m-%d %H:%M} UTC, "
        f"by transaction Bundles in {time.perf_counter() - began:.1f} s"
    )

    outcomes: Outcomes = defaultdict(list)
    jobs = [
        book(client, slot, patients[n % PATIENTS], outcomes)
        for n, slot in enumerate(distinct[: args.slots])
    ]
    before = server_cpu_seconds(server)
    latencies, wall = await run_concurrently(jobs, CONCURRENCY)
    label = f"$book, distinct slots, {CONCURRENCY} in flight"
    summarize(label, outcomes, latencies, wall, server_cpu_seconds(server) - before)
    problems = [f"Slot/{s}: {o}" for s, o in outcomes.items() if o != ["201"]]

    outcomes = defaultdict(list)
    before = server_cpu_seconds(server)
    latencies, wall = await race(client, contended, patients, args.racers, outcomes)
    label = f"$book, contended slots, {args.racers} racing per slot"
    summarize(label, outcomes, latencies, wall, server_cpu_seconds(server) - before)
    return problems + await check_one_winner(client, contended, outcomes)


async def seed_patients(client: httpx.AsyncClient) -> list[str]:
    patient = {"resourceType": "Patient", "name": [{"family": "Bench"}]}
    return await transaction(client, [patient] * PATIENTS)


async def seed_schedule(client: httpx.AsyncClient, n: int, slots: int) -> list[str]:
    """One Practitioner, their Schedule and its `slots` free Slots of 15 minutes, in one
    transaction; the Slots' ids."""
    practitioner, schedule = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "name": [{"family": f"Bench {n}"}]},
        {"resourceType": "Schedule", "active": True, "actor": [{"reference": practitioner}]},
    ]
    for index in range(slots):
        begins = START + timedelta(minutes=15 * index)
        resources.append(
            {
                "resourceType": "Slot",
                "schedule": {"reference": schedule},
                "status": "free",
                "start": begins.isoformat().replace("+00:00", "Z"),
                "end": (begins + timedelta(minutes=15)).isoformat().replace("+00:00", "Z"),
            }
        )
    return (await transaction(client, resources, [practitioner, schedule]))[2:]


async def transaction(
    client: httpx.AsyncClient, resources: list[dict[str, Any]], full_urls: Sequence[str] = ()
) -> list[str]:
    """POST `resources` in one transaction Bundle (the first ones under `full_urls`, so that
    the others can refer to them); the ids given, in order."""
    urls = [*full_urls, *(f"urn:uuid:{uuid.uuid4()}" for _ in resources[len(full_urls) :])]
    entries = [
        {"fullUrl": url, "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        for url, r in zip(urls, resources, strict=True)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = await client.post("", json=bundle, headers=FHIR_JSON)
    if response.status_code != 200:
        raise SystemExit(f"seeding transaction → {response.status_code}: {response.text[:300]}")
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    return [location.split("/_history/")[0].rpartition("/")[2] for location in locations]


async def book(client: httpx.AsyncClient, slot: str, patient: str, outcomes: Outcomes) -> float:
    """One `$book` of `slot` for `patient`, its latency; what it answered goes to `outcomes`."""
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
    }
    parameter = {"name": "appt-resource", "resource": appointment}
    body = {"resourceType": "Parameters", "parameter": [parameter]}
    began = time.perf_counter()
    try:
        response = await client.post("/Appointment/$book", json=body, headers=FHIR_JSON)
        answer = str(response.status_code)
        if response.status_code >= 300:
            issues = response.json().get("issue", [])
            answer += " " + ",".join(issue.get("code", "?") for issue in issues)
    except httpx.HTTPError as error:
        answer = type(error).__name__
    outcomes[slot].append(answer)
    return time.perf_counter() - began


async def race(
    client: httpx.AsyncClient,
    slots: list[str],
    patients: list[str],
    racers: int,
    outcomes: Outcomes,
) -> tuple[list[float], float]:
    """Slot after slot, `racers` bookings of it sent together; all latencies and the wall time."""
    latencies: list[float] = []
    began = time.perf_counter()
    for n, slot in enumerate(slots):
        takers = [patients[(n * racers + r) % PATIENTS] for r in range(racers)]
        latencies += await asyncio.gather(*(book(client, slot, p, outcomes) for p in takers))
    return latencies, time.perf_counter() - began


def summarize(
    label: str, outcomes: Outcomes, latencies: list[float], wall: float, cpu: float
) -> None:
    """rest.py's line (requests/s, latency, server CPU), then bookings/s and every answer."""
    report(label, latencies, wall, cpu)
    answers = Counter(answer for per_slot in outcomes.values() for answer in per_slot)
    counted = "; ".join(f"{answer}: {count}" for answer, count in sorted(answers.items()))
    print(f"  {answers['201']} bookings = {answers['201'] / wall:.0f} bookings/s; {counted}")


async def check_one_winner(
    client: httpx.AsyncClient, slots: list[str], outcomes: Outcomes
) -> list[str]:
    """Each contended slot answered one 201 and only business-rule 409s besides, and the server
    holds exactly one booked Appointment on it."""
    problems = []
    for slot in slots:
        params = {"slot": f"Slot/{slot}", "status": "booked", "_summary": "count"}
        stored = (await client.get("/Appointment", params=params)).json().get("total")
        answers = Counter(outcomes[slot])
        losers = len(outcomes[slot]) - 1
        if answers != Counter({"201": 1, "409 business-rule": losers}) or stored != 1:
            problems.append(f"Slot/{slot}: answers {dict(answers)}, {stored} booked stored")
    print(
        f"  exactly one booking per contended slot (answers and stored Appointments): "
        f"{len(slots) - len(problems)} of {len(slots)} slots"
    )
    return problems


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=2000)
    parser.add_argument("--contended", type=int, default=100)
    parser.add_argument("--racers", type=int, default=20)
    parser.add_argument("--server-log", type=Path, help="keep the server's stderr in this file")
    sys.exit(asyncio.run(main(parser.parse_args())))
