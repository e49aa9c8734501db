"""The cheap requests of issue 8 ("Hardening"), each sent to a live server: what it answers, how
long it takes and how much memory the server's peak grows by.

The server is `creneau serve --sandbox` with one worker on the embedded store, restarted for
every probe so that each peak (VmHWM of the server process, from /proc) is the probe's own. The
store is seeded once: PRACTITIONERS Practitioners in postal code 13001, a Schedule each, SLOTS
free Slots over 31 days. A probe still running after --timeout seconds is reported as such (the
server is then killed). Run it on two commits to compare before and after:

    python bench/hardening.py [--slots 20000] [--timeout 60] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rest import FHIR_JSON, free_port, start_server

PRACTITIONERS = 1100
BATCH = 500
TOMORROW = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
AVAILABILITY = "https://fhir.creneau.org/StructureDefinition/schedule-availability"
Probe = Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[httpx.Response]]


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    return {**entry, "fullUrl": full_url} if full_url else entry


async def seed(client: httpx.AsyncClient, slots: int) -> dict[str, Any]:
    """The shared store: practitioners, their schedules, free slots; what the probes need."""
    schedules: list[str] = []
    for first in range(0, PRACTITIONERS, BATCH):
        entries = []
        for n in range(first, min(first + BATCH, PRACTITIONERS)):
            practitioner = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
            address = [{"city": "Marseille", "postalCode": "13001"}]
            entries.append(post({"resourceType": "Practitioner", "address": address}, practitioner))
            schedule = {
                "resourceType": "Schedule",
                "active": True,
                "actor": [{"reference": practitioner}],
                "serviceType": [{"coding": [{"system": "urn:bench", "code": "consult"}]}],
            }
            entries.append(post(schedule))
        answer = await client.post("/fhir", json=transaction(entries), headers=FHIR_JSON)
        answer.raise_for_status()
        locations = [
            e["response"]["location"].split("/_history")[0] for e in answer.json()["entry"]
        ]
        schedules += [
            "Schedule/" + at.split("Schedule/")[1] for at in locations if "Schedule/" in at
        ]
    for first in range(0, slots, BATCH):
        entries = [
            post(_slot(schedules[n % len(schedules)], n)) for n in range(first, first + BATCH)
        ]
        (
            await client.post("/fhir", json=transaction(entries), headers=FHIR_JSON)
        ).raise_for_status()
    location = {"resourceType": "Location", "name": "Bench centre"}
    made = await client.post("/fhir/Location", json=location, headers=FHIR_JSON)
    return {"schedules": schedules, "location": f"Location/{made.json()['id']}"}


def _slot(schedule: str, n: int) -> dict[str, Any]:
    start = TOMORROW + timedelta(days=n % 31, minutes=15 * (n // 31 % 40))
    return {
        "resourceType": "Slot",
        "schedule": {"reference": schedule},
        "status": "free",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=15)).isoformat(),
    }


# --- the probes: one per row of the issue's table -------------------------------------------


async def linked_transaction(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    """10 entries that all reference each other."""
    urls = [f"urn:uuid:10000000-0000-4000-8000-{n:012d}" for n in range(10)]
    entries = [post({"resourceType": "Patient", "link": _links(urls, url)}, url) for url in urls]
    return await client.post("/fhir", json=transaction(entries), headers=FHIR_JSON)


def _links(urls: list[str], own: str) -> list[dict[str, Any]]:
    return [{"other": {"reference": u}, "type": "seealso"} for u in urls if u != own]


async def chain_transaction(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    """400 entries, each referencing the next."""
    urls = [f"urn:uuid:20000000-0000-4000-8000-{n:012d}" for n in range(400)]
    entries = [
        post({"resourceType": "Patient", "link": _links(urls[n + 1 : n + 2], "")}, url)
        for n, url in enumerate(urls)
    ]
    return await client.post("/fhir", json=transaction(entries), headers=FHIR_JSON)


async def copy_patch(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    """21 chained JSON Patch `copy` operations: the document doubles each time."""
    made = await client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "X" * 40}]},
        headers=FHIR_JSON,
    )
    patient = made.json()["id"]
    operations = [{"op": "copy", "from": "/name", "path": "/name/0"} for _ in range(21)]
    headers = {"Content-Type": "application/json-patch+json"}
    return await client.patch(
        f"/fhir/Patient/{patient}", content=json.dumps(operations), headers=headers
    )


async def minute_rule(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    """A Schedule with a 1-minute, all-day, every-day availability rule."""
    days = [
        {"url": "daysOfWeek", "valueCode": d}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ]
    rule = {
        "url": AVAILABILITY,
        "extension": [
            {"url": "availableTime", "extension": [*days, {"url": "allDay", "valueBoolean": True}]},
            {
                "url": "duration",
                "valueDuration": {"value": 1, "system": "http://unitsofmeasure.org", "code": "min"},
            },
            {
                "url": "horizon",
                "valueDuration": {"value": 60, "system": "http://unitsofmeasure.org", "code": "d"},
            },
        ],
    }
    schedule = {
        "resourceType": "Schedule",
        "active": True,
        "actor": [{"reference": seeded["location"]}],
        "extension": [rule],
    }
    return await client.post("/fhir/Schedule", json=schedule, headers=FHIR_JSON)


async def many_includes(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    form = "&".join(["_include=Slot:schedule"] * 60_000)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return await client.post("/fhir/Slot/_search", content=form, headers=headers)


async def rare_service_find(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    end = TOMORROW + timedelta(days=31)
    params = {"start": TOMORROW.isoformat(), "end": end.isoformat(), "service-type": "zzz"}
    return await client.get("/fhir/Appointment/$find", params=params)


async def flood_pending(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    """Untimed setup: 20,001 slot-less pending Appointments at a place (what is refused is
    refused; the probe then asks the place's $doses)."""
    place = seeded["location"]
    appointment = {
        "resourceType": "Appointment",
        "status": "pending",
        "start": TOMORROW.isoformat(),
        "end": (TOMORROW + timedelta(minutes=5)).isoformat(),
        "participant": [{"actor": {"reference": place}, "status": "accepted"}],
    }
    for _ in range(0, 20_001, 1000):
        entries = [post(appointment) for _ in range(1000)]
        response = await client.post("/fhir", json=transaction(entries), headers=FHIR_JSON)
    return response


async def doses_there(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    return await client.get(f"/fhir/{seeded['location']}/$doses")


async def huge_transaction(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
    entries = [
        post({"resourceType": "Patient", "name": [{"family": f"P{n}"}]}) for n in range(10_000)
    ]
    return await client.post("/fhir", json=transaction(entries), headers=FHIR_JSON)


def searching(path: str, params: dict[str, str] | str) -> Probe:
    async def probe(client: httpx.AsyncClient, seeded: dict[str, Any]) -> httpx.Response:
        return await client.get(path, params=params)

    return probe


PROBES: dict[str, Probe] = {
    "transaction, 10 entries referencing each other": linked_transaction,
    "transaction, a 400-entry reference chain": chain_transaction,
    "JSON Patch, 21 chained copies": copy_patch,
    "Schedule with a 1-minute all-day rule": minute_rule,
    "POST _search with 60,000 _include": many_includes,
    "$find?service-type=zzz over 31 days": rare_service_find,
    "$doses after 20,001 slot-less pending Appointments": doses_there,
    "transaction of 10,000 entries": huge_transaction,
    "_count of 4,300 digits": searching("/fhir/Slot", {"_count": "9" * 4300}),
    "chain 700 deep": searching(
        "/fhir/Slot", {"schedule.actor:Location.organization" + ".partof" * 700: "x"}
    ),
    "OR of 1,000 values": searching("/fhir/Slot", {"_id": ",".join(f"id{n}" for n in range(1000))}),
    "_sort of 2,500 keys": searching("/fhir/Slot", {"_sort": ",".join(["start"] * 2500)}),
    "date at +14:00 near year 1": searching("/fhir/Slot", {"start": "ge0001-01-01T00:00:00+14:00"}),
    "date at -14:00 near year 9999": searching(
        "/fhir/Slot", {"start": "le9999-12-31T23:59:59-14:00"}
    ),
    "$find?address-postalcode=13": searching(
        "/fhir/Appointment/$find",
        {
            "start": TOMORROW.isoformat(),
            "end": (TOMORROW + timedelta(days=7)).isoformat(),
            "address-postalcode": "13",
        },
    ),
    "_revinclude over 1,100 results": searching(
        "/fhir/Schedule", {"_count": "1000", "_revinclude": "Slot:schedule"}
    ),
}


SETUPS: dict[str, Probe] = {"$doses after 20,001 slot-less pending Appointments": flood_pending}


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def run_probe(
    folder: Path, name: str, probe: Probe, seeded: dict[str, Any], timeout: float
) -> str:
    port = free_port()
    server = start_server(folder, port, workers=1)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
            if name in SETUPS:
                setup = await SETUPS[name](client, seeded)
                print(f"  setup: {setup.status_code} {_issue(setup)}")
            before = peak_kib(server.pid)
            began = time.perf_counter()
            try:
                response = await asyncio.wait_for(probe(client, seeded), timeout)
                answer = f"{response.status_code} {_issue(response)}"
            except (TimeoutError, httpx.TimeoutException):
                answer = f"no answer after {timeout:.0f} s"
            took = time.perf_counter() - began
        grown = (peak_kib(server.pid) - before) / 1024
        return f"{name:52} {took:8.2f} s  peak +{grown:7.1f} MiB  {answer}"
    finally:
        server.kill()
        server.wait()


def _issue(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if body.get("resourceType") == "OperationOutcome":
        issue = body["issue"][0]
        return f"{issue.get('code')}: {issue.get('diagnostics', '')[:70]}"
    return body.get("resourceType", "")


async def main(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="creneau-hardening-"))
    port = free_port()
    server = start_server(folder, port, workers=1)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            began = time.perf_counter()
            seeded = await seed(client, args.slots)
        took = time.perf_counter() - began
        print(f"seeded {PRACTITIONERS} practitioners and {args.slots} slots in {took:.0f} s")
    finally:
        server.terminate()
        server.wait()
    print(f"{'request':52} {'time':>10}  {'memory':>17}  answer")
    for name, probe in PROBES.items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        print(await run_probe(folder, name, probe, seeded, args.timeout), flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--only", nargs="*", default=[])
    sys.exit(asyncio.run(main(parser.parse_args())))
