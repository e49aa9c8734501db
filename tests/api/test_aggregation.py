"""Aggregating other publishers (`server.federation.consumer`): real publications, served from
real loopback HTTP servers, read by the consumer over its injected `httpx.AsyncClient`.

B (the app under test, on each store) aggregates A (a second Créneau, on SQLite, in sandbox),
then the SMART Scheduling Links project's example publication (`tests/data/`)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.app import create_app
from server.auth import clients
from server.config import Settings
from server.federation import polling, sources

EXAMPLES = Path(__file__).parent.parent / "data" / "smart-scheduling-links"
LINK = "https://rdv.a.example/book/1"
SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition"
SOURCE_TAG = "https://fhir.creneau.org/CodeSystem/source"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serving(app: Any, port: int) -> AsyncIterator[str]:
    """`app` served by uvicorn on a loopback port, in this event loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def aggregator(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """B with its lifespan, no background polling (the test polls), and an admin client."""
    async with httpx.AsyncClient(timeout=30) as outbound:
        app = create_app(replace(settings, federation_poll_seconds=0), federation_http=outbound)
        async with app.router.lifespan_context(app):
            admin, _ = await clients.create(app.state.store, name="op", admin=True, secret=True)
            token = (await app.state.authority.issue(admin))["access_token"]
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://test",
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                yield app, client


async def _poll(app: FastAPI, name: str) -> sources.Status:
    store = app.state.store
    source = await sources.get_or_raise(store, name)
    return await polling.poll_one(
        store, app.state.federation_http, app.state.federation_rules, source
    )


def _instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def _publish_on(a: httpx.AsyncClient) -> list[str]:
    """A place, its Schedule and two future Slots on A; the Slots' ids."""
    place = {
        "resourceType": "Location",
        "name": "Centre A",
        "telecom": [{"system": "phone", "value": "01 23 45 67 89"}],
        "address": {"line": ["1 rue A"], "city": "Paris", "postalCode": "75001"},
    }
    location = (await a.post("/fhir/Location", json=place)).json()
    service = [{"coding": [{"system": "urn:test:service", "code": "consult"}]}]
    schedule = {
        "resourceType": "Schedule",
        "active": True,
        "serviceType": service,
        "actor": [{"reference": f"Location/{location['id']}"}],
        "extension": [{"url": f"{SMART}/booking-phone", "valueString": "01 23 45 67 89"}],
    }
    made = (await a.post("/fhir/Schedule", json=schedule)).json()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    ids = []
    for n in range(2):
        slot = {
            "resourceType": "Slot",
            "schedule": {"reference": f"Schedule/{made['id']}"},
            "status": "free",
            "start": _instant(start + timedelta(hours=n)),
            "end": _instant(start + timedelta(hours=n, minutes=20)),
            "extension": [{"url": f"{SMART}/booking-deep-link", "valueUrl": LINK}],
        }
        answer = await a.post("/fhir/Slot", json=slot)
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


async def _find(client: httpx.AsyncClient) -> set[str]:
    now = datetime.now(UTC)
    window = f"start={_instant(now)}&end={_instant(now + timedelta(days=7))}"
    answer = await client.get(f"/fhir/Appointment/$find?{window}&_include=Appointment:slot")
    assert answer.status_code == 200, answer.text
    entries = answer.json().get("entry", [])
    return {e["resource"]["id"] for e in entries if e["resource"]["resourceType"] == "Slot"}


async def test_b_aggregates_a(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    a_settings = Settings(
        data_dir=tmp_path / "a",
        base_url=f"http://127.0.0.1:{port}/fhir",
        sandbox=True,
        hold_sweep_seconds=0,
        federation_poll_seconds=0,
        audit_flush_seconds=3600,
    )
    async with (
        serving(create_app(a_settings), port) as a_base,
        httpx.AsyncClient(base_url=a_base) as a,
        aggregator(settings) as (b_app, b),
    ):
        slot_ids = await _publish_on(a)
        manifest = f"{a_base}/fhir/$bulk-publish"
        added = await b.post("/federation/sources", json={"url": manifest, "name": "a"})
        assert added.status_code == 201, added.text

        status = await _poll(b_app, "a")
        assert status.outcome == "ok", status
        assert status.taken == {"Location": 1, "Schedule": 1, "Slot": 2}
        remote = {f"a.{i}" for i in slot_ids}
        assert remote <= await _find(b)
        tagged = await b.get("/fhir/Slot", params={"_tag": f"{SOURCE_TAG}|a"})
        assert {e["resource"]["id"] for e in tagged.json()["entry"]} == remote
        by_source = await b.get("/fhir/Slot", params={"_source": manifest})
        assert len(by_source.json()["entry"]) == 2
        slot = tagged.json()["entry"][0]["resource"]
        assert {"system": manifest, "value": f"Slot/{slot['id'][2:]}"} in slot["identifier"]

        await _refused_on_b(b, slot)

        patient = (await a.post("/fhir/Patient", json={"resourceType": "Patient"})).json()
        booked = await a.post("/fhir/Appointment", json=_appointment(slot_ids[0], patient["id"]))
        assert booked.status_code == 201, booked.text
        assert (await _poll(b_app, "a")).outcome == "ok"
        assert f"a.{slot_ids[0]}" not in await _find(b)
        assert f"a.{slot_ids[1]}" in await _find(b)

        assert (await a.delete(f"/fhir/Slot/{slot_ids[1]}")).status_code in (200, 204)
        status = await _poll(b_app, "a")
        assert status.removed == 1, status
        assert (await b.get(f"/fhir/Slot/a.{slot_ids[1]}")).status_code in (404, 410)
        shown = (await b.get("/federation/sources/a")).json()
        assert shown["status"]["outcome"] == "ok" and shown["url"] == manifest


def _appointment(slot_id: str, patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }


async def _refused_on_b(b: httpx.AsyncClient, slot: dict[str, Any]) -> None:
    """No client books a remote slot (409, where to book it instead), nor changes it (403)."""
    patient = (await b.post("/fhir/Patient", json={"resourceType": "Patient"})).json()
    refused = await b.post("/fhir/Appointment", json=_appointment(slot["id"], patient["id"]))
    assert refused.status_code == 409, refused.text
    told = refused.json()["issue"][0]["diagnostics"]
    assert LINK in told and "01 23 45 67 89" in told, told
    changed = await b.put(f"/fhir/Slot/{slot['id']}", json={**slot, "status": "busy"})
    assert changed.status_code == 403, changed.text
    forged = {k: v for k, v in slot.items() if k not in ("id",)}
    assert (await b.post("/fhir/Slot", json=forged)).status_code == 403


def _example_app(files: dict[str, bytes]) -> Starlette:
    """The example publication as a publisher would serve it, its URLs made loopback ones: the
    files kept in `tests/data` are listed, whether `files` still holds them or not."""
    kept = set(files)

    async def manifest(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        listed = orjson.loads((EXAMPLES / "$bulk-publish").read_bytes())
        for output in listed["output"]:
            output["url"] = f"{base}/{output['url'].rsplit('/', 1)[1]}"
        listed["output"] = [o for o in listed["output"] if o["url"].rsplit("/", 1)[1] in kept]
        return Response(orjson.dumps(listed), media_type="application/json")

    async def file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return Response(status_code=404)
        return Response(files[name], media_type="application/fhir+ndjson")

    return Starlette(routes=[Route("/$bulk-publish", manifest), Route("/{name}", file)])


async def test_the_smart_example_publication(settings: Settings) -> None:
    files = {p.name: p.read_bytes() for p in EXAMPLES.glob("*.ndjson")}
    port = _free_port()
    async with serving(_example_app(files), port) as base, aggregator(settings) as (b_app, b):
        url = f"{base}/$bulk-publish"
        assert (await b.post("/federation/sources", json={"url": url})).status_code == 201
        name = sources.name_of(url, None)
        status = await _poll(b_app, name)
        assert status.outcome == "ok", status
        assert status.taken == {"Location": 10, "Schedule": 10, "Slot": 20}, status
        assert status.refused_count == 0, status.refused
        found = await b.get("/fhir/Slot", params={"_source": url, "_count": "50"})
        assert len(found.json()["entry"]) == 20

        lines = files["slots-2021-W09.ndjson"].decode().splitlines()
        changed = orjson.loads(lines[0])
        changed["status"] = "waitlist"  # not a SMART status: refused, the old one kept
        files["slots-2021-W09.ndjson"] = "\n".join(
            [orjson.dumps(changed).decode(), "{not json", *lines[1:-1]]
        ).encode()
        status = await _poll(b_app, name)
        assert status.outcome == "ok" and status.refused_count == 2, status
        assert [r["line"] for r in status.refused] == [1, 2]
        assert status.removed == 1  # the last Slot, no longer listed
        kept = await b.get(f"/fhir/Slot/{name}.{changed['id']}")
        assert kept.json()["status"] == "free"

        del files["schedules.ndjson"]  # a file that cannot be read: nothing removed
        status = await _poll(b_app, name)
        assert status.outcome == "failed" and status.failures == 1, status
        found = await b.get("/fhir/Schedule", params={"_source": url, "_count": "50"})
        assert len(found.json()["entry"]) == 10
