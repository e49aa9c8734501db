"""What auth costs: the same search and booking load with auth off (the sandbox), with the
operator's admin token, and with a booking app's token (its owner's grants, filtered searches,
an AuditEvent and a Provenance per booking), on the embedded store, one worker per core; then
the token check alone.

- Search: wrk (the C load generator, Debian package `wrk`), `-t2 -c16`, for `--seconds`, on
  `Slot?schedule=..&status=free&start=ge..&start=lt..&_count=50`: requests/s, p50/p99, and
  the server's CPU per request (user + system of every server process, from /proc).
- Booking: `$book` of distinct free slots, 16 in flight from one httpx client: server CPU per
  booking (the Python client bounds the rate, not the server's CPU per request).
- Token check: `Authority.caller` in process (time.process_time): a token seen for the first
  time (signature, claims) and one already verified (what each later request of an app costs).

    python bench/auth_cost.py [--seconds 10] [--bookings 600]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from booking import START, transaction
from rest import (
    CONCURRENCY,
    FHIR_JSON,
    free_port,
    report,
    run_concurrently,
    server_cpu_seconds,
    start_server,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.live import registered_client

SCHEDULES = 20
MODES = ("auth off (sandbox)", "admin token", "booking app token")
ENV = {**os.environ, "CRENEAU_TOKEN_SECONDS": "7200"}  # one token for the whole run


@dataclass
class Seeded:
    organization: str
    schedules: list[str]
    slots: list[str]  # free, in booking order


async def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt install wrk")
    folder = Path(tempfile.mkdtemp(prefix="creneau-bench-"))
    port, workers = free_port(), os.cpu_count() or 1
    print(f"server: embedded SQLite store, {workers} worker processes, same machine as the load")
    try:
        with serving(folder, port, workers, sandbox=True):
            async with client_of(port, None) as client:
                seeded = await seed(client, args.bookings)
        admin, app = register(folder, port, "--admin"), register(folder, port)
        with serving(folder, port, workers, sandbox=False):
            async with client_of(port, admin["token"]) as client:
                await grant(client, seeded, app["client_id"])
        for n, (mode, token) in enumerate(
            zip(MODES, (None, admin["token"], app["token"]), strict=True)
        ):
            slots = seeded.slots[n * args.bookings : (n + 1) * args.bookings]
            with serving(folder, port, workers, sandbox=token is None) as server:
                async with client_of(port, token) as client:
                    await search_load(client, port, seeded, mode, args.seconds, server)
                    await booking_load(client, slots, mode, server)
        await token_check_cost(folder / "tokens")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def serving(folder: Path, port: int, workers: int, sandbox: bool) -> Iterator[Any]:
    server = start_server(folder, port, workers, sandbox=sandbox)
    try:
        yield server
    finally:
        server.terminate()
        server.wait(timeout=30)


def client_of(port: int, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/fhir",
        headers=headers,
        limits=httpx.Limits(max_connections=CONCURRENCY),
        timeout=60,
    )


def register(folder: Path, port: int, *options: str) -> dict[str, str]:
    """A client registered with `creneau clients create`, with a token from `creneau token`
    (for the server on `port`: the token names it as issuer and audience)."""
    name = f"bench {options}"
    client_id, token = registered_client(folder, str(port), name, *options, env=ENV)
    return {"client_id": client_id, "token": token}


async def seed(client: httpx.AsyncClient, bookings: int) -> Seeded:
    """An organization employing one practitioner per Schedule, and enough free Slots for every
    mode's bookings (the first ones) and for the searches."""
    began = time.perf_counter()
    [organization] = await transaction(client, [{"resourceType": "Organization", "name": "B"}])
    per_schedule = max(-(-3 * bookings // SCHEDULES), 200)
    schedules: list[str] = []
    by_schedule: list[list[str]] = []
    for _ in range(SCHEDULES):
        role, schedule = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
        resources: list[dict[str, Any]] = [
            {
                "resourceType": "PractitionerRole",
                "organization": {"reference": f"Organization/{organization}"},
            },
            {"resourceType": "Schedule", "active": True, "actor": [{"reference": role}]},
        ]
        resources += [free_slot(schedule, index) for index in range(per_schedule)]
        ids = await transaction(client, resources, [role, schedule])
        schedules.append(ids[1])
        by_schedule.append(ids[2:])
    slots = [s for row in zip(*by_schedule, strict=True) for s in row]
    print(
        f"seed: {SCHEDULES} Schedules of one Organization, {len(slots)} free Slots, "
        f"in {time.perf_counter() - began:.1f} s"
    )
    return Seeded(organization, schedules, slots)


def free_slot(schedule: str, index: int) -> dict[str, Any]:
    begins = START + timedelta(minutes=15 * index)
    return {
        "resourceType": "Slot",
        "schedule": {"reference": schedule},
        "status": "free",
        "start": begins.isoformat().replace("+00:00", "Z"),
        "end": (begins + timedelta(minutes=15)).isoformat().replace("+00:00", "Z"),
    }


async def grant(client: httpx.AsyncClient, seeded: Seeded, app_id: str) -> None:
    """The organization lets the booking app book (and so discover) its Schedules."""
    parts = [
        {"name": "client", "valueString": app_id},
        {"name": "access", "valueCode": "book"},
    ]
    body = {"resourceType": "Parameters", "parameter": parts}
    url = f"/Organization/{seeded.organization}/$grant"
    response = await client.post(url, json=body, headers=FHIR_JSON)
    if response.status_code != 201:
        raise SystemExit(f"$grant → {response.status_code}: {response.text[:300]}")


async def search_load(
    client: httpx.AsyncClient,
    port: int,
    seeded: Seeded,
    mode: str,
    seconds: int,
    server: subprocess.Popen[bytes],
) -> None:
    day = START + timedelta(days=1)
    query = (
        f"schedule={seeded.schedules[0]}&status=free&start=ge{day:%Y-%m-%dT%H:%M:%SZ}"
        f"&start=lt{day + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}&_count=50"
    )
    check = await client.get(f"/Slot?{query}")
    found = len(check.json().get("entry", []))
    if check.status_code != 200 or not found:
        raise SystemExit(f"search → {check.status_code}, {found} slots: {check.text[:200]}")
    command = ["wrk", "-t2", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency"]
    if "Authorization" in client.headers:
        command += ["-H", f"Authorization: {client.headers['Authorization']}"]
    before = server_cpu_seconds(server)
    out = subprocess.run(
        [*command, f"http://127.0.0.1:{port}/fhir/Slot?{query}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = server_cpu_seconds(server) - before
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out).group(1)  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print(
        f"{mode}: Slot search ({found} of a day), wrk -t2 -c{CONCURRENCY} {seconds} s: "
        f"{rate:.0f}/s, p50 {p50}, p99 {p99}; server CPU {cpu / done * 1000:.2f} ms/request"
        + (f"; {errors.group(1)} non-2xx!" if errors else "")
    )


async def booking_load(
    client: httpx.AsyncClient, slots: list[str], mode: str, server: subprocess.Popen[bytes]
) -> None:
    patients = await transaction(
        client, [{"resourceType": "Patient", "name": [{"family": "Bench"}]}] * 50
    )
    answers: Counter[int] = Counter()

    async def book(n: int, slot: str) -> float:
        appointment = {
            "resourceType": "Appointment",
            "status": "proposed",
            "slot": [{"reference": f"Slot/{slot}"}],
            "participant": [
                {"actor": {"reference": f"Patient/{patients[n % 50]}"}, "status": "accepted"}
            ],
        }
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": "appt-resource", "resource": appointment}],
        }
        began = time.perf_counter()
        response = await client.post("/Appointment/$book", json=body, headers=FHIR_JSON)
        answers[response.status_code] += 1
        return time.perf_counter() - began

    before = server_cpu_seconds(server)
    latencies, wall = await run_concurrently([book(n, s) for n, s in enumerate(slots)])
    report(f"{mode}: $book, distinct slots", latencies, wall, server_cpu_seconds(server) - before)
    print(f"  answers: {dict(answers)}")


async def token_check_cost(folder: Path, count: int = 2000) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from server.app import create_app
    from server.auth import clients
    from server.config import Settings

    application = create_app(Settings(data_dir=folder))
    async with application.router.lifespan_context(application):
        registered, _ = await clients.create(application.state.store, name="bench")
        authority = application.state.authority
        tokens = [(await authority.issue(registered))["access_token"] for _ in range(count)]
        began = time.process_time()
        for token in tokens:
            await authority.caller(f"Bearer {token}")
        fresh = (time.process_time() - began) / count
        began = time.process_time()
        for _ in range(10 * count):
            await authority.caller(f"Bearer {tokens[0]}")
        known = (time.process_time() - began) / (10 * count)
    print(
        f"token check, in process: {fresh * 1e6:.0f} µs for a new token (signature and claims), "
        f"{known * 1e6:.1f} µs for one already verified (cached until it expires)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--bookings", type=int, default=600)
    asyncio.run(main(parser.parse_args()))
