"""REST benchmark on the embedded store, over HTTP, the server on one worker process per core.

Measures (1) Slot creation by single POSTs: creates/s and p50/p99 latency, with CONCURRENCY
clients in flight; (2) with SLOTS Slots loaded (the rest loaded by transaction Bundles of 500),
the hot booking-app search `Slot?schedule=..&status=free&start=ge..&start=lt..&_count=50`:
p50/p99 latency and requests/s, once loaded (CONCURRENCY in flight) and once with one request
in flight per worker (latency without queueing). The load generator runs on the same machine
as the server, so the figures are a floor for what the server does with the machine to itself.

    python bench/rest.py [--slots 100000] [--creates 3000] [--searches 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx

CONCURRENCY = 16
SCHEDULES = 100
FHIR_JSON = {"Content-Type": "application/fhir+json"}
START = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    data_dir: Path,
    port: int,
    workers: int,
    stderr: IO[bytes] | int = subprocess.DEVNULL,
    sandbox: bool = True,
) -> subprocess.Popen[bytes]:
    """`creneau serve`, in the sandbox (auth off) unless `sandbox` is False."""
    creneau = Path(sys.executable).parent / "creneau"
    options = ["--data-dir", str(data_dir), "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [str(creneau), "serve", *options, *(["--sandbox"] if sandbox else [])],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/fhir/metadata").status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("server did not start")


def slot(schedule: str, index: int) -> dict[str, Any]:
    begins = START + timedelta(minutes=15 * index)
    return {
        "resourceType": "Slot",
        "schedule": {"reference": schedule},
        "status": "busy" if index % 10 == 0 else "free",
        "start": begins.isoformat().replace("+00:00", "Z"),
        "end": (begins + timedelta(minutes=15)).isoformat().replace("+00:00", "Z"),
    }


async def timed(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> float:
    began = time.perf_counter()
    response = await client.request(method, url, **kwargs)
    elapsed = time.perf_counter() - began
    if response.status_code >= 300:
        raise SystemExit(f"{method} {url} → {response.status_code}: {response.text[:300]}")
    return elapsed


async def run_concurrently(
    jobs: list[Any], concurrency: int = CONCURRENCY
) -> tuple[list[float], float]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []

    async def worker() -> None:
        while not queue.empty():
            latencies.append(await queue.get_nowait())

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - began


def server_cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """CPU time (user + system) used so far by the server and its worker processes (Linux)."""
    pids, total = [server.pid], 0.0
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    if children.exists():
        pids += [int(pid) for pid in children.read_text().split()]
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def report(label: str, latencies: list[float], wall: float, cpu: float) -> None:
    """Throughput and latency as the client saw them, and the server's own CPU per request
    (what a faster load generator or a bigger machine could not reduce)."""
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{label}: {len(latencies)} requests in {wall:.1f} s = {len(latencies) / wall:.0f}/s; "
        f"p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms; "
        f"server CPU {cpu / len(latencies) * 1000:.2f} ms/request"
    )


async def measure(
    server: subprocess.Popen[bytes], label: str, jobs: list[Any], concurrency: int = CONCURRENCY
) -> None:
    before = server_cpu_seconds(server)
    latencies, wall = await run_concurrently(jobs, concurrency)
    report(label, latencies, wall, server_cpu_seconds(server) - before)


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="creneau-bench-"))
    port, workers = free_port(), os.cpu_count() or 1
    server = start_server(folder, port, workers)
    print(
        f"server: embedded SQLite store, {workers} worker processes, {CONCURRENCY} concurrent "
        f"clients from one process on the same machine"
    )
    try:
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/fhir", limits=limits, timeout=60
        ) as client:
            schedules = await make_schedules(client)
            per_schedule = args.slots // SCHEDULES
            creates = [
                timed(
                    client,
                    "POST",
                    "/Slot",
                    json=slot(schedules[i % SCHEDULES], i // SCHEDULES),
                    headers=FHIR_JSON,
                )
                for i in range(args.creates)
            ]
            await measure(server, f"Slot create (POST), {CONCURRENCY} in flight", creates)
            await bulk_load(client, schedules, args.creates, per_schedule)
            for concurrency in (CONCURRENCY, workers):
                searches = [
                    search(client, random.choice(schedules), per_schedule)
                    for _ in range(args.searches)
                ]
                label = f"Slot search, {args.slots} slots, {concurrency} in flight"
                await measure(server, label, searches, concurrency)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


async def make_schedules(client: httpx.AsyncClient) -> list[str]:
    found = []
    for n in range(SCHEDULES):
        body = {
            "resourceType": "Schedule",
            "active": True,
            "actor": [{"reference": f"Practitioner/bench-{n}"}],
        }
        response = await client.post("/Schedule", json=body, headers=FHIR_JSON)
        found.append(f"Schedule/{response.json()['id']}")
    return found


async def bulk_load(
    client: httpx.AsyncClient, schedules: list[str], done: int, per_schedule: int
) -> None:
    began = time.perf_counter()
    entries = [
        slot(schedules[i % SCHEDULES], i // SCHEDULES)
        for i in range(done, per_schedule * SCHEDULES)
    ]
    for chunk in range(0, len(entries), 500):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "POST", "url": "Slot"}}
                for r in entries[chunk : chunk + 500]
            ],
        }
        await timed(client, "POST", "", json=bundle, headers=FHIR_JSON)
    wall = time.perf_counter() - began
    print(
        f"bulk load: {len(entries)} Slots by transaction Bundles of 500 in {wall:.1f} s "
        f"= {len(entries) / wall:.0f}/s"
    )


def search(client: httpx.AsyncClient, schedule: str, per_schedule: int) -> Any:
    day = START + timedelta(minutes=15 * random.randrange(per_schedule))
    params = {
        "schedule": schedule,
        "status": "free",
        "start": [f"ge{day:%Y-%m-%d}", f"lt{day + timedelta(days=7):%Y-%m-%d}"],
        "_count": "50",
    }
    return timed(client, "GET", "/Slot", params=params)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=100_000)
    parser.add_argument("--creates", type=int, default=3000)
    parser.add_argument("--searches", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
