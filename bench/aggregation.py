"""Aggregation of a large remote publication: one poll of SLOTS Slots (100,000 by default) of
SCHEDULES Schedules at as many Locations, read from a loopback HTTP server by the consumer
(`server.federation.consumer`) and kept in the embedded store; then the same poll again with
nothing changed (every line read and compared, none written). The publication is generated,
not a Créneau one, so that only the consumer is measured; it is served by uvicorn in this
process, as plain NDJSON.

Printed: lines taken, seconds, Slots/s, and this process's peak resident memory (VmHWM)
before the poll, after the first and after the second.

    python bench/aggregation.py [--slots 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from server.app import create_app
from server.config import Settings
from server.federation import polling, sources

SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition"


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def lines(kind: str, slots: int, schedules: int) -> Iterator[bytes]:
    if kind == "Location":
        for n in range(schedules):
            yield (
                orjson.dumps(
                    {
                        "resourceType": "Location",
                        "id": f"l{n}",
                        "name": f"Place {n}",
                        "telecom": [{"system": "phone", "value": "000-000-0000"}],
                        "address": {
                            "line": [f"{n} Main St"],
                            "city": "Town",
                            "state": "MA",
                            "postalCode": "02114",
                        },
                    }
                )
                + b"\n"
            )
    elif kind == "Schedule":
        for n in range(schedules):
            yield (
                orjson.dumps(
                    {
                        "resourceType": "Schedule",
                        "id": f"s{n}",
                        "actor": [{"reference": f"Location/l{n}"}],
                        "serviceType": [{"coding": [{"system": "urn:bench", "code": "consult"}]}],
                    }
                )
                + b"\n"
            )
    else:
        start = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(days=1)
        for n in range(slots):
            begin = start + timedelta(minutes=20 * (n // schedules))
            yield (
                orjson.dumps(
                    {
                        "resourceType": "Slot",
                        "id": f"t{n}",
                        "schedule": {"reference": f"Schedule/s{n % schedules}"},
                        "status": "free",
                        "start": begin.isoformat(),
                        "end": (begin + timedelta(minutes=20)).isoformat(),
                        "extension": [
                            {
                                "url": f"{SMART}/booking-deep-link",
                                "valueUrl": f"https://book.example/{n}",
                            }
                        ],
                    }
                )
                + b"\n"
            )


def publisher(slots: int, schedules: int) -> Starlette:
    async def manifest(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        output = [
            {"type": k, "url": f"{base}/{k}.ndjson"} for k in ("Location", "Schedule", "Slot")
        ]
        body = {
            "transactionTime": datetime.now(UTC).isoformat(),
            "request": f"{base}/$bulk-publish",
            "output": output,
            "error": [],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def file(request: Request) -> StreamingResponse:
        kind = request.path_params["kind"]
        return StreamingResponse(
            lines(kind, slots, schedules), media_type="application/fhir+ndjson"
        )

    return Starlette(routes=[Route("/$bulk-publish", manifest), Route("/{kind}.ndjson", file)])


async def main(slots: int, schedules: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(publisher(slots, schedules), port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    with tempfile.TemporaryDirectory() as folder:
        settings = replace(
            Settings(data_dir=Path(folder)), federation_poll_seconds=0, hold_sweep_seconds=0
        )
        async with httpx.AsyncClient(timeout=60) as http:
            app = create_app(settings, federation_http=http)
            async with app.router.lifespan_context(app):
                store = app.state.store
                url = f"http://127.0.0.1:{port}/$bulk-publish"
                source = await sources.add(store, url=url, name="bench", now="2030-01-01T00:00:00Z")
                print(f"peak memory before: {peak_mib():.0f} MiB")
                for label in ("first poll", "unchanged poll"):
                    began = time.perf_counter()
                    status = await polling.poll_one(store, http, app.state.federation_rules, source)
                    took = time.perf_counter() - began
                    print(
                        f"{label}: {status.outcome}, taken {status.taken}, refused "
                        f"{status.refused_count}, {took:.1f} s, {slots / took:,.0f} Slots/s, "
                        f"peak memory {peak_mib():.0f} MiB"
                    )
    server.should_exit = True
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=100_000)
    parser.add_argument("--schedules", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.slots, args.schedules))
