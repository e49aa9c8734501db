"""`$bulk-publish` of a large publication on the embedded store, over HTTP, the server as one
worker process with auth on: the public reads what the owners published for everyone.

SLOTS Slots (1,000,000 by default) of SCHEDULES_PER_PLACE Schedules at each of PLACES Locations
spread over DEPARTMENTS departments are written straight into the store (the load is not what
is measured: its index values and access labels are those the API would write), every owner
granting `discover` to every client. Then a client reads the manifest and every file it lists,
line by line without keeping them, as an aggregator polling the publication would (gzip, as
httpx asks), and again with `_since` its `transactionTime` (nothing changed: the cost of a
poll). Printed: Slots published, seconds, Slots/s, bytes, and the server's peak resident memory
(VmHWM) once started, once warm (a manifest read: its first search loads the search registry)
and after every file: run with `--slots 100000` and `--slots 1000000` to see that it does not
grow with the number of Slots.

    python bench/publication.py [--slots 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rest import free_port, start_server

from server.auth import audiences, labels
from server.auth.grants import EVERYONE, Grant
from server.config import Settings
from server.fhir.indexing import extract
from server.fhir.values import format_instant
from server.store.base import Version
from server.store.sqlite import SqliteStore

DEPARTMENTS = ("75", "92", "93", "94", "69", "13", "33", "59", "31", "44")
PLACES = 1000
SCHEDULES_PER_PLACE = 2
BATCH = 5000
MINUTES = 15
WRITTEN = datetime.now(UTC) - timedelta(hours=1)  # the data was written before the reads


def stamped(body: dict[str, Any], owner: str, *, public: bool = False) -> dict[str, Any]:
    meta = {"versionId": "1", "lastUpdated": format_instant(WRITTEN)}
    published = frozenset({audiences.PUBLIC}) if public else frozenset()
    return labels.with_labels({**body, "meta": meta}, frozenset({owner}), frozenset(), published)


def version(body: dict[str, Any]) -> tuple[Version, Any]:
    updated = body["meta"]["lastUpdated"]
    return Version(body["resourceType"], body["id"], 1, updated, body, "POST"), extract(body)


def place(n: int) -> list[dict[str, Any]]:
    owner = f"Organization/org-{n}"
    department = DEPARTMENTS[n % len(DEPARTMENTS)]
    grant = Grant(owner, EVERYONE, frozenset({"discover"})).to_basic(
        format_instant(datetime.now(UTC))
    )
    return [
        {"resourceType": "Organization", "id": f"org-{n}", "name": f"Centre {n}", "active": True},
        {**grant, "id": f"grant-{n}"},
        {
            "resourceType": "Location",
            "id": f"loc-{n}",
            "name": f"Centre {n}",
            "telecom": [{"system": "phone", "value": f"+331400{n:05d}"}],
            "address": {
                "line": [f"{n} rue de la Paix"],
                "city": "Ville",
                "postalCode": f"{department}{n % 1000:03d}",
            },
            "managingOrganization": {"reference": owner},
        },
    ]


def schedule(n: int, k: int) -> dict[str, Any]:
    service = {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "124"}]
    }
    return {
        "resourceType": "Schedule",
        "id": f"sch-{n}-{k}",
        "active": True,
        "serviceType": [service],
        "actor": [{"reference": f"Location/loc-{n}"}],
    }


def slot(schedule_id: str, index: int, start: datetime) -> dict[str, Any]:
    begins = start + timedelta(minutes=MINUTES * index)
    return {
        "resourceType": "Slot",
        "id": f"{schedule_id}-{index}",
        "schedule": {"reference": f"Schedule/{schedule_id}"},
        "status": "busy" if index % 7 == 0 else "free",
        "start": format_instant(begins),
        "end": format_instant(begins + timedelta(minutes=MINUTES)),
        "comment": f"https://rdv.example/{schedule_id}/{index}",
    }


async def load(data_dir: Path, slots: int) -> None:
    store = SqliteStore(Settings(data_dir=data_dir).sqlite_path)
    await store.open()
    per_schedule = max(1, slots // (PLACES * SCHEDULES_PER_PLACE))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    batch: list[tuple[Version, Any]] = []
    began = time.monotonic()

    async def flush() -> None:
        async with store.transaction() as tx:
            await tx.put_new(batch)
        batch.clear()

    for n in range(PLACES):
        owner = f"Organization/org-{n}"
        batch += [version(stamped(body, owner)) for body in place(n)]
        for k in range(SCHEDULES_PER_PLACE):
            plan = stamped(schedule(n, k), owner)
            batch.append(version(plan))
            for index in range(per_schedule):
                batch.append(version(stamped(slot(plan["id"], index, start), owner, public=True)))
                if len(batch) >= BATCH:
                    await flush()
    await flush()
    await store.close()
    total = per_schedule * PLACES * SCHEDULES_PER_PLACE
    print(f"loaded {total} slots in {time.monotonic() - began:.0f} s (not measured)")


def peak_kib(server: subprocess.Popen[bytes]) -> int:
    status = Path(f"/proc/{server.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


async def read_all(client: httpx.AsyncClient, manifest_url: str) -> tuple[Counter[str], int, str]:
    """Every file of the manifest, line by line: lines and seconds per type, bytes, and the
    manifest's transactionTime."""
    began = time.monotonic()
    manifest = (await client.get(manifest_url)).json()
    print(f"  manifest: {time.monotonic() - began:.2f} s, {len(manifest['output'])} files")
    counts: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    size = 0
    for output in manifest["output"]:
        began = time.monotonic()
        async with client.stream("GET", output["url"]) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line:
                    counts[output["type"]] += 1
                    size += len(line) + 1
        seconds[output["type"]] += time.monotonic() - began
    for kind, spent in seconds.items():
        print(f"  {kind} files: {counts[kind]} lines in {spent:.2f} s")
    return counts, size, manifest["transactionTime"]


async def measure(base: str, server: subprocess.Popen[bytes]) -> None:
    print(f"server peak memory, started: {peak_kib(server) / 1024:.0f} MiB")
    async with httpx.AsyncClient(timeout=600) as client:
        await client.get(f"{base}/fhir/$bulk-publish")  # its first search loads the registry
        print(f"server peak memory, one manifest read: {peak_kib(server) / 1024:.0f} MiB")
        began = time.monotonic()
        counts, size, since = await read_all(client, f"{base}/fhir/$bulk-publish")
        wall = time.monotonic() - began
        slots = counts.get("Slot", 0)
        print(f"published {dict(counts)}, {size / 2**20:.0f} MiB of NDJSON")
        print(f"full read: {wall:.1f} s, {slots / wall:,.0f} slots/s")
        print(f"server peak memory, every file read: {peak_kib(server) / 1024:.0f} MiB")
        began = time.monotonic()
        delta, _, _ = await read_all(client, f"{base}/fhir/$bulk-publish?_since={since}")
        print(f"_since poll, nothing changed: {time.monotonic() - began:.2f} s, {dict(delta)}")
        print(f"server peak memory at the end: {peak_kib(server) / 1024:.0f} MiB")


async def main(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="creneau-publication-"))
    try:
        await load(data_dir, args.slots)
        port = free_port()
        server = start_server(data_dir, port, workers=1, sandbox=False)
        try:
            await measure(f"http://127.0.0.1:{port}", server)
        finally:
            server.terminate()
            server.wait(timeout=30)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args()))
