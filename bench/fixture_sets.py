"""Fixtures benchmark: time and peak memory to generate and to load `test` (~100,000 slots) and
to generate `national` (~5 million slots), then search latency on a loaded embedded store: the
SAS aggregator's query (a practitioner's free slots by RPPS, with their Schedule, Practitioner
and PractitionerRole, three days) and the `$find` of one department (a week, 50 proposals).

Each generation and load runs as its own `creneau fixtures` process: its wall time and peak
resident memory (`wait4`) are printed. The latency is measured in-process over HTTP (ASGI), one
request at a time. Loading `national` through the rules takes hours on a 2-core machine: it is
only done with `--load-national`; `--latency-store DIR` measures on a store loaded before.

    python bench/fixture_sets.py [--work DIR] [--skip-national] [--load-national]
                             [--latency-store DIR --latency-data DIR] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from server.app import create_app
from server.config import Settings

CRENEAU = str(Path(sys.executable).parent / "creneau")
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
START = "2026-12-07"


def run(label: str, *arguments: str) -> None:
    """One `creneau` process: its wall time and peak resident memory."""
    began = time.monotonic()
    process = subprocess.Popen(
        [CRENEAU, *arguments], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{label} failed:\n{output}")
    seconds = time.monotonic() - began
    print(f"{label}: {seconds:.1f} s, peak memory {usage.ru_maxrss / 1024:.0f} MiB")
    print("  " + "\n  ".join(output.strip().splitlines()[-14:]))


def folder_size(folder: Path) -> str:
    total = sum(path.stat().st_size for path in folder.iterdir())
    return f"{total / 2**20:.0f} MiB"


def sample(folder: Path, kind: str, count: int) -> list[dict]:
    """`count` resources of the type, spread over its file (read as a stream)."""
    with (folder / f"{kind}.ndjson").open("rb") as file:
        lines = sum(1 for _ in file)
    wanted = set(random.Random(1).sample(range(lines), min(count, lines)))
    with (folder / f"{kind}.ndjson").open("rb") as file:
        return [orjson.loads(line) for n, line in enumerate(file) if n in wanted]


async def latency(store: Path, data: Path, requests: int) -> None:
    """p50 / p99 of the SAS query and of a department's `$find`, one request at a time."""
    settings = Settings(data_dir=store, sandbox=True, hold_sweep_seconds=0.0)
    app = create_app(settings)
    rpps = [p["identifier"][0]["value"] for p in sample(data, "Practitioner", requests)]
    postal = [loc["address"]["postalCode"][:2] for loc in sample(data, "Location", requests)]
    now = datetime.now(UTC).replace(microsecond=0)
    begin = max(now, datetime.fromisoformat(START).replace(tzinfo=UTC))
    until = begin + timedelta(days=3)
    window = (
        f"start=ge{begin:%Y-%m-%dT%H:%M:%S}.000+00:00&start=le{until:%Y-%m-%dT%H:%M:%S}.000+00:00"
    )
    sas = [
        f"/fhir/Slot?_include=Slot:schedule&_include:iterate=Schedule:actor&schedule.actor:Practitioner.identifier={RPPS}|{r}&{window}&status=free"
        for r in rpps
    ]
    week = f"start={begin.isoformat()}&end={(begin + timedelta(days=7)).isoformat()}".replace(
        "+", "%2B"
    )
    find = [f"/fhir/Appointment/$find?{week}&address-postalcode={p}&_count=50" for p in postal]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            for label, urls in (
                ("SAS query by RPPS (3 days)", sas),
                ("$find of one department (7 days, 50)", find),
            ):
                await _measure(http, label, urls)


async def _measure(http: httpx.AsyncClient, label: str, urls: list[str]) -> None:
    await http.get(urls[0])  # warm the caches once
    times, found = [], []
    for url in urls:
        began = time.perf_counter()
        answer = await http.get(url)
        times.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text[:300]
        found.append(len(answer.json().get("entry", [])))
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(
        f"{label}: p50 {statistics.median(times) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"{statistics.mean(found):.0f} entries on average, {len(urls)} requests"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-fixtures"))
    parser.add_argument("--skip-national", action="store_true")
    parser.add_argument("--load-national", action="store_true")
    parser.add_argument("--latency-store", type=Path)
    parser.add_argument("--latency-data", type=Path)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    work = args.work
    if args.latency_store is None:
        test, store = work / "test", work / "store-test"
        run(
            "generate test",
            "fixtures",
            "generate",
            "--size",
            "test",
            "--start",
            START,
            "--out",
            str(test),
        )
        print(f"  {folder_size(test)} of NDJSON")
        run("load test", "fixtures", "load", str(test), "--data-dir", str(store))
        asyncio.run(latency(store, test, args.requests))
        if not args.skip_national:
            national = work / "national"
            run(
                "generate national",
                "fixtures",
                "generate",
                "--size",
                "national",
                "--start",
                START,
                "--out",
                str(national),
            )
            print(f"  {folder_size(national)} of NDJSON")
            if args.load_national:
                run(
                    "load national",
                    "fixtures",
                    "load",
                    str(national),
                    "--data-dir",
                    str(work / "store-national"),
                )
                asyncio.run(latency(work / "store-national", national, args.requests))
    else:
        asyncio.run(
            latency(args.latency_store, args.latency_data or work / "national", args.requests)
        )


if __name__ == "__main__":
    main()
