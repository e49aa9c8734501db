"""Moving an agenda: a practitioner's Schedules, Slots and future Appointments exported from one
server (FHIR Bulk Data `$export`, kick-off, status, files) and imported into another through its
rules: the same resources (ids differ, identifiers equal), bookings on their slots, and a second
import adds nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.api import export
from server.app import create_app, load_conformance, make_policy
from server.config import Settings
from server.federation import importing_sources
from server.federation.importing import origin_of
from tests.api.scheduling_setup import add_slots, booking, open_practice
from tests.conftest import COMMON, AppClient
from tests.factories import FHIR_JSON, create, ref

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
async def other(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """Server B, where the agenda moves to (the embedded store)."""
    settings = Settings(**COMMON, data_dir=tmp_path / "b")  # type: ignore[arg-type]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def _kick_off(client: httpx.AsyncClient, path: str, **params: str) -> str:
    response = await client.get(path, params=params, headers=ASYNC)
    assert response.status_code == 202, response.text
    return response.headers["content-location"].removeprefix("http://test")


async def _files(client: httpx.AsyncClient, status: str) -> dict[str, list[dict[str, Any]]]:
    manifest = (await client.get(status)).json()
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    found = {}
    for output in manifest["output"]:
        response = await client.get(output["url"].removeprefix("http://test"))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        found[output["type"]] = [
            httpx.Response(200, text=line).json() for line in response.text.splitlines()
        ]
    return found


async def _import(
    app: FastAPI, source: importing_sources.Files | importing_sources.Remote, origin: str
) -> Any:
    settings = app.state.settings
    fhir = export.server_interactions(
        app.state.store, settings, make_policy(settings), load_conformance(settings).by_url
    )
    return await export.load(fhir, source, origin)


async def _all(app: FastAPI, kind: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as b:
        registered = await _admin(app)
        bundle = (await b.get(f"/fhir/{kind}", params={"_count": "100"}, headers=registered)).json()
    return [e["resource"] for e in bundle.get("entry", [])]


async def _admin(app: FastAPI) -> dict[str, str]:
    from server.auth import clients

    client, _ = await clients.create(app.state.store, name="b-admin", admin=True, secret=True)
    token = await app.state.authority.issue(client)
    return {"Authorization": f"Bearer {token['access_token']}"}


async def test_an_agenda_moves_with_its_bookings_and_a_second_import_adds_nothing(
    client: httpx.AsyncClient, other: FastAPI, tmp_path: Path
) -> None:
    practice = await open_practice(client, patients=2)
    slots = await add_slots(client, practice.consultations, 3)
    booked = await create(client, {**booking(slots[0], practice.patients[0]), "status": "booked"})
    status = await _kick_off(client, f"/fhir/Practitioner/{practice.practitioner['id']}/$export")
    files = await _files(client, status)
    assert {s["id"] for s in files["Slot"]} == set(slots)
    assert [a["id"] for a in files["Appointment"]] == [booked["id"]]
    assert [p["id"] for p in files["Patient"]] == [practice.patients[0]["id"]]
    assert {s["id"] for s in files["Schedule"]} == {
        practice.consultations["id"],
        practice.vaccinations["id"],
    }
    assert not any("security" in r.get("meta", {}) for rs in files.values() for r in rs)

    source, request = await importing_sources.remote(f"http://test{status}", client, None)
    first = await _import(other, source, origin_of(request))
    assert first.created["Slot"] == 3 and first.created["Appointment"] == 1, first.lines()
    assert not first.refused, first.lines()

    folder = tmp_path / "export"
    folder.mkdir()
    for kind, resources in files.items():
        (folder / f"{kind}.ndjson").write_text(
            "".join(httpx.Response(200, json=r).text + "\n" for r in resources)
        )
    again = await _import(other, importing_sources.Files([folder]), origin_of(request))
    assert not again.created and not again.refused, again.lines()

    moved = await _all(other, "Slot")
    origin = origin_of(request)
    by_source = {i["value"]: s for s in moved for i in s["identifier"] if i["system"] == origin}
    assert set(by_source) == {f"Slot/{i}" for i in slots}
    assert by_source[f"Slot/{slots[0]}"]["status"] == "busy"
    assert {by_source[f"Slot/{i}"]["status"] for i in slots[1:]} == {"free"}
    [appointment] = await _all(other, "Appointment")
    assert appointment["status"] == "booked"
    assert appointment["slot"] == [{"reference": f"Slot/{by_source[f'Slot/{slots[0]}']['id']}"}]
    [practitioner] = await _all(other, "Practitioner")
    assert practitioner["identifier"] == practice.practitioner["identifier"]


async def test_the_kick_off_asks_for_respond_async_and_known_types(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/fhir/$export")).status_code == 400
    refused = await client.get("/fhir/$export", params={"_type": "Slot,Claim"}, headers=ASYNC)
    assert refused.status_code == 400 and "Claim" in refused.text
    bad = await client.get("/fhir/$export", params={"_outputFormat": "text/csv"}, headers=ASYNC)
    assert bad.status_code == 400
    missing = await client.get("/fhir/Practitioner/nobody/$export", headers=ASYNC)
    assert missing.status_code == 404


async def test_a_job_is_its_client_s_own_and_can_be_cancelled(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    status = await _kick_off(client, "/fhir/$export", _type="Slot,Schedule")
    manifest = (await client.get(status)).json()
    assert [o["type"] for o in manifest["output"]] == ["Schedule", "Slot"]
    stranger = await app_client("stranger")
    assert (await stranger.get(status)).status_code == 404
    assert (await stranger.get(manifest["output"][0]["url"])).status_code == 404
    assert (await client.delete(status)).status_code == 202
    assert (await client.get(status)).status_code == 404


async def test_an_export_holds_only_what_the_caller_may_discover(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    practice = await open_practice(client, patients=1)
    await add_slots(client, practice.consultations, 1)
    stranger = await app_client("stranger")
    files = await _files(
        stranger, await _kick_off(stranger, "/fhir/$export", _type="Schedule,Slot,Patient")
    )
    assert files == {"Schedule": [], "Slot": [], "Patient": []}
    owner = await app_client("owner", owners=(ref(practice.practitioner),))
    since = await _files(owner, await _kick_off(owner, "/fhir/$export", _type="Slot"))
    assert len(since["Slot"]) == 1


async def test_import_is_for_admins_and_reads_urls_only(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    manifest = {
        "request": "http://a/fhir/$export",
        "output": [{"type": "Slot", "url": "/etc/passwd"}],
    }
    stranger = await app_client("stranger")
    refused = await stranger.post("/fhir/$import", json=manifest, headers=FHIR_JSON)
    assert refused.status_code == 403
    paths = await client.post("/fhir/$import", json=manifest, headers=FHIR_JSON)
    assert paths.status_code == 400 and "http(s)" in paths.text
    nameless = await client.post("/fhir/$import", json={"output": []}, headers=FHIR_JSON)
    assert nameless.status_code == 400
