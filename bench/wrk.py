"""The hot paths under wrk (a C load generator, so the client is not the bottleneck), on the
embedded store with the server's default workers (one per core).

The store is seeded once per size and kept under bench/.cache/ (delete it to rebuild):
PRACTITIONERS practitioners with an RPPS, a Schedule each, and --slots free 15-minute Slots
spread over them, 08:00-18:00 UTC on consecutive days. Each workload runs wrk -t2 -c16 for
--seconds; the server's CPU time (user + system, all its processes, from /proc) over the run
gives its CPU per request. Workloads:

    search      Slot?schedule=..&status=free&start=ge<day>&start=lt<day+1> (a day's free slots)
    include     the same with _include=Slot:schedule
    read        Slot/<id>
    sas         the SAS aggregator's query for 10 practitioners by RPPS (chain + include:iterate)
    sas100      the same for 100 practitioners at once (the SAS test kit's limit: 1 s)
    create      POST Slot (a new slot each time)
    book        POST Appointment/$book on distinct free slots (each booked once)

    python bench/wrk.py [--slots 100000] [--seconds 10] [--only search read ...]

wrk comes from Debian's packages (`make bench` installs it when it is absent).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rest import FHIR_JSON, free_port, server_cpu_seconds, start_server

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
PRACTITIONERS = 200
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
START = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)
PER_DAY = 40  # 15-minute slots from 08:00 to 18:00
BATCH = 1000
THREADS, CONNECTIONS = 2, 16


@dataclass
class Result:
    name: str
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    refused: int
    cpu_ms: float


def rpps(n: int) -> str:
    return f"8{99_000_000_000 + n:011d}"


def seed(base: str, slots: int) -> None:
    """Practitioners, their Schedules, then the Slots in transaction Bundles of BATCH."""
    with httpx.Client(base_url=base, timeout=600) as client:
        entries = []
        for n in range(PRACTITIONERS):
            practitioner = f"urn:uuid:{uuid.UUID(int=n + 1)}"
            entries.append(
                _post(
                    {
                        "resourceType": "Practitioner",
                        "identifier": [{"system": RPPS, "value": rpps(n)}],
                    },
                    practitioner,
                )
            )
            schedule = {
                "resourceType": "Schedule",
                "active": True,
                "actor": [{"reference": practitioner}],
            }
            entries.append(_post(schedule, f"urn:uuid:{uuid.UUID(int=10**6 + n)}"))
        answer = _transaction(client, entries)
        schedules = [_relative(e["response"]["location"]) for e in answer["entry"][1::2]]
        (CACHE / f"slots-{slots}" / "schedules.json").write_text(json.dumps(schedules))
        per_schedule = slots // PRACTITIONERS
        pending: list[dict[str, Any]] = []
        for index in range(per_schedule):
            for schedule in schedules:
                pending.append(_post(_slot(schedule, index)))
                if len(pending) == BATCH:
                    _transaction(client, pending)
                    pending = []
        if pending:
            _transaction(client, pending)


def _relative(location: str) -> str:
    """`Schedule/id` of a Location header: the server's base (its port) changes between runs,
    and an absolute reference to another base is a foreign one, which finds nothing here."""
    return "/".join(location.split("/_history")[0].split("/")[-2:])


def _post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    return {**entry, "fullUrl": full_url} if full_url else entry


def _transaction(client: httpx.Client, entries: list[dict[str, Any]]) -> dict[str, Any]:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = client.post("", content=json.dumps(bundle), headers=FHIR_JSON)
    if response.status_code != 200:
        raise SystemExit(f"seeding → {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


def _slot(schedule: str, index: int) -> dict[str, Any]:
    day, position = divmod(index, PER_DAY)
    begins = START + timedelta(days=day, minutes=15 * position)
    return {
        "resourceType": "Slot",
        "schedule": {"reference": schedule},
        "status": "free",
        "start": begins.isoformat().replace("+00:00", "Z"),
        "end": (begins + timedelta(minutes=15)).isoformat().replace("+00:00", "Z"),
    }


def run_wrk(
    url: str, script: str, args: list[str], seconds: int
) -> tuple[float, float, float, int, int]:
    """wrk's requests/s, p50 and p99 (ms), non-2xx answers and the requests sent."""
    command = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(HERE / "wrk" / script),
        url,
        "--",
        *args,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    sent = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    refused_match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return (
        per_second,
        _latency(out, "50%"),
        _latency(out, "99%"),
        int(refused_match.group(1)) if refused_match else 0,
        sent,
    )


def _latency(out: str, cut: str) -> float:
    value, unit = re.search(rf"{cut}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def sas_query(first: int, practitioners: int) -> str:
    """The SAS aggregator's query (as its test kit sends it) for `practitioners` RPPS."""
    chosen = ",".join(f"{RPPS}|{rpps((first + k) % PRACTITIONERS)}" for k in range(practitioners))
    return (
        "/fhir/Slot?_include=Slot:schedule&_include:iterate=Schedule:actor"
        f"&schedule.actor:Practitioner.identifier={chosen}"
        f"&start=ge{START:%Y-%m-%dT%H:%M:%S}.000%2B00:00"
        f"&start=le{START + timedelta(days=3):%Y-%m-%dT%H:%M:%S}.000%2B00:00&status=free"
    )


def workload_files(
    base: str, slots: int, folder: Path, schedules: list[str]
) -> dict[str, tuple[str, list[str]]]:
    """Each workload's wrk script and its arguments (files of paths or bodies)."""
    days = max(1, slots // PRACTITIONERS // PER_DAY)
    searches, includes, sas, sas100 = [], [], [], []
    for n, schedule in enumerate(schedules):
        for day in range(days):
            when = START + timedelta(days=day)
            window = f"start=ge{when:%Y-%m-%d}&start=lt{when + timedelta(days=1):%Y-%m-%d}"
            path = f"/fhir/Slot?schedule={schedule}&status=free&{window}"
            searches.append(path)
            includes.append(path + "&_include=Slot:schedule")
        sas.append(sas_query(n, 10))
        sas100.append(sas_query(n, 100))
    with httpx.Client(base_url=base, timeout=120) as client:
        ids = client.get("/Slot", params={"_count": "1000", "_elements": "id"}).json()
        for name, path in (("search", searches[0]), ("sas", sas[0])):
            found = client.get(path.removeprefix("/fhir")).json().get("entry", [])
            if not found:
                raise SystemExit(f"the {name} workload finds nothing: {path}")
    reads = [f"/fhir/Slot/{e['resource']['id']}" for e in ids.get("entry", [])]
    files = {"search": searches, "include": includes, "sas": sas, "sas100": sas100, "read": reads}
    out: dict[str, tuple[str, list[str]]] = {}
    for name, lines in files.items():
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
        out[name] = ("paths.lua", [str(folder / f"{name}.txt")])
    return out


def body_files(
    base: str, folder: Path, schedules: list[str], seconds: int
) -> dict[str, tuple[str, list[str]]]:
    """Slots to create far in the future (never overlapping the seeded ones), and free Slots
    to book, one body each: more than a run sends at the goals' rates."""
    enough = 2000 * seconds
    creates = [
        json.dumps(_slot(schedules[i % len(schedules)], 100_000 + i // len(schedules)))
        for i in range(enough)
    ]
    (folder / "create.txt").write_text("\n".join(creates) + "\n")
    with httpx.Client(base_url=base, timeout=300) as client:
        free = _free_slots(client, enough // 4)
        patients = _patients(client, len(free))
    books = []
    for slot_id, patient in zip(free, patients, strict=True):
        appointment = {
            "resourceType": "Appointment",
            "status": "proposed",
            "slot": [{"reference": f"Slot/{slot_id}"}],
            "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}],
        }
        books.append(
            json.dumps(
                {
                    "resourceType": "Parameters",
                    "parameter": [{"name": "appt-resource", "resource": appointment}],
                }
            )
        )
    (folder / "book.txt").write_text("\n".join(books) + "\n")
    return {
        "create": ("bodies.lua", [str(folder / "create.txt"), "/fhir/Slot", str(THREADS)]),
        "book": ("bodies.lua", [str(folder / "book.txt"), "/fhir/Appointment/$book", str(THREADS)]),
    }


def _patients(client: httpx.Client, count: int) -> list[str]:
    """One patient per booking: a patient booked twice at the same time would be refused."""
    ids: list[str] = []
    for first in range(0, count, BATCH):
        entries = [
            _post({"resourceType": "Patient", "name": [{"family": f"Bench{n}"}]})
            for n in range(first, min(first + BATCH, count))
        ]
        answer = _transaction(client, entries)
        ids += [_relative(e["response"]["location"]).split("/")[1] for e in answer["entry"]]
    return ids


def _free_slots(client: httpx.Client, most: int) -> list[str]:
    """Ids of free Slots, the latest first (so that runs book different ones), `most` at most."""
    found: list[str] = []
    params: dict[str, str] | None = {
        "status": "free",
        "_count": "1000",
        "_elements": "id",
        "_sort": "-start",
    }
    url = "/Slot"
    while url and len(found) < most:
        page = client.get(url, params=params).json()
        found += [e["resource"]["id"] for e in page.get("entry", [])]
        url = next((link["url"] for link in page.get("link", []) if link["relation"] == "next"), "")
        params = None
    return found[:most]


def main(args: argparse.Namespace) -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `make bench` installs Debian's wrk")
    data = CACHE / f"slots-{args.slots}"
    fresh = not (data / "schedules.json").exists()
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(data, port, os.cpu_count() or 1)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        if fresh:
            print(f"seeding {args.slots} slots into {data} (once) ...", file=sys.stderr)
            seed(base, args.slots)
        schedules = [_relative(s) for s in json.loads((data / "schedules.json").read_text())]
        folder = Path(tempfile.mkdtemp(prefix="creneau-wrk-"))
        plans = workload_files(base, args.slots, folder, schedules)
        plans |= body_files(base, folder, schedules, args.seconds)
        results = []
        for name, (script, script_args) in plans.items():
            if args.only and name not in args.only:
                continue
            before = server_cpu_seconds(server)
            per_second, p50, p99, refused, sent = run_wrk(
                f"http://127.0.0.1:{port}", script, script_args, args.seconds
            )
            cpu = server_cpu_seconds(server) - before
            results.append(
                Result(name, sent, per_second, p50, p99, refused, cpu / max(sent, 1) * 1000)
            )
        print_table(args, results)
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


def print_table(args: argparse.Namespace, results: list[Result]) -> None:
    workers = os.cpu_count() or 1
    print(
        f"wrk -t{THREADS} -c{CONNECTIONS} -d{args.seconds}s, {args.slots} slots, "
        f"embedded store, {workers} workers, same machine"
    )
    print("| workload | requests/s | p50 ms | p99 ms | refused | server CPU ms/request |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r.name} | {r.per_second:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.refused} | {r.cpu_ms:.2f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slots", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=[])
    sys.exit(main(parser.parse_args()))
