"""SMART Scheduling Links publication: `GET /fhir/$bulk-publish` and its NDJSON files, read as a
Slot Discovery Client reads them, every line checked against FHIR R4B and the SMART profiles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.auth import clients
from server.auth.audiences import TYPE_CRENEAU
from server.config import Settings
from tests.api.access_setup import grant
from tests.api.scheduling_setup import TOMORROW, booking
from tests.conftest import AppClient, TimeTravel
from tests.factories import (
    CONSULTATION,
    FHIR_JSON,
    appointment_in,
    create,
    fresh_rpps,
    make_delivery,
    make_location,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    make_vaccination_schedule,
    operate,
    ref,
)
from tests.unit.federation.smart_profiles import extension, line_problems, manifest_problems

PHONE = "+33140000001"
BOOKING_PHONE = "http://fhir-registry.smarthealthit.org/StructureDefinition/booking-phone"


@dataclass
class Owner:
    organization: dict[str, Any]
    location: dict[str, Any]
    role: dict[str, Any]
    agenda: httpx.AsyncClient  # the owner's own client

    @property
    def ref(self) -> str:
        return ref(self.organization)


async def open_owner(
    admin: httpx.AsyncClient, app_client: AppClient, name: str, postal_code: str
) -> Owner:
    """An organization with a phone, its Location (none of its own) and a practitioner's role."""
    organization = await create(
        admin,
        {
            "resourceType": "Organization",
            "name": name,
            "active": True,
            "telecom": [{"system": "phone", "value": PHONE}],
        },
    )
    location = make_location(name, postal_code)
    location["address"]["line"] = ["12 rue de Belleville"]
    location["managingOrganization"] = {"reference": ref(organization)}
    location = await create(admin, location)
    practitioner = await create(admin, make_practitioner(fresh_rpps(), family=f"Dr {name}"))
    role = await create(
        admin,
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": ref(practitioner)},
            "organization": {"reference": ref(organization)},
        },
    )
    agenda = await app_client(
        f"agenda of {name}", owners=(ref(organization),), scope="system/*.cruds"
    )
    return Owner(organization, location, role, agenda)


async def consultations(owner: Owner, **extra: Any) -> dict[str, Any]:
    schedule = make_schedule(ref(owner.location), serviceType=[CONSULTATION], **extra)
    schedule["actor"].append({"reference": ref(owner.role)})
    return await create(owner.agenda, schedule)


async def slot(owner: Owner, schedule: dict[str, Any], hours: float, **extra: Any) -> str:
    start = TOMORROW + timedelta(hours=hours)
    created = await create(owner.agenda, make_slot(ref(schedule), start, **extra))
    return str(created["id"])


@asynccontextmanager
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def publication(
    http: httpx.AsyncClient, **params: str
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The manifest and the lines of every file it lists, each line checked."""
    response = await http.get("/fhir/$bulk-publish", params=params)
    assert response.status_code == 200, response.text
    manifest = response.json()
    assert manifest_problems(manifest) == []
    found: dict[str, list[dict[str, Any]]] = {"Location": [], "Schedule": [], "Slot": []}
    for output in manifest["output"]:
        url = output["url"].removeprefix("http://test")
        answer = await http.get(url, headers={"Accept": "application/fhir+ndjson"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/fhir+ndjson")
        for line in answer.content.splitlines():
            resource = orjson.loads(line)
            assert line_problems(resource) == []
            found[output["type"]].append(resource)
    return manifest, found


def by_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in lines}


def statuses(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {line["id"]: line["status"] for line in lines}


async def test_the_public_reads_the_owners_who_opened_discovery_to_everyone(
    client: httpx.AsyncClient, app_client: AppClient, app: FastAPI
) -> None:
    opened = await open_owner(client, app_client, "Belleville", "75020")
    closed = await open_owner(client, app_client, "Croix-Rousse", "69004")
    schedule = await consultations(opened, extension=[{"url": BOOKING_PHONE, "valueString": PHONE}])
    free = await slot(opened, schedule, 1, comment="https://rdv.example/belleville/1")
    busy = await slot(opened, schedule, 2, status="busy")
    await slot(opened, schedule, 3, status="busy-unavailable")
    await slot(opened, schedule, -48)  # past
    await slot(opened, schedule, 4, meta={"security": [{"system": TYPE_CRENEAU, "code": "PRO"}]})
    await slot(closed, await consultations(closed), 1)
    assert (await grant(opened.agenda, opened.ref, "*", "discover")).status_code == 201

    async with anonymous(app) as public:
        manifest, lines = await publication(public)
    assert manifest["requiresAccessToken"] is False
    slot_files = [o for o in manifest["output"] if o["type"] == "Slot"]
    assert [o["extension"] for o in slot_files] == [{"state": ["FR-75"]}]
    assert statuses(lines["Slot"]) == {free: "free", busy: "busy"}
    published = by_id(lines["Slot"])[free]
    assert extension(published, "booking-deep-link") == "https://rdv.example/belleville/1"
    assert extension(published, "booking-phone") == PHONE
    assert extension(published, "slot-capacity") == 1
    assert "meta" not in published or set(published["meta"]) == {"lastUpdated"}
    assert list(by_id(lines["Schedule"])) == [schedule["id"]]
    [location] = lines["Location"]
    assert location["id"] == opened.location["id"]
    assert extension(location, "has-availability") == "some"
    assert location["telecom"] == [{"system": "phone", "value": PHONE}]  # its organization's
    assert location["address"]["state"] == "FR-75"


async def test_a_client_with_a_token_sees_what_it_may_discover(
    client: httpx.AsyncClient, app_client: AppClient, app: FastAPI
) -> None:
    opened = await open_owner(client, app_client, "Belleville", "75020")
    closed = await open_owner(client, app_client, "Croix-Rousse", "69004")
    public_slot = await slot(opened, await consultations(opened), 1)
    closed_slot = await slot(closed, await consultations(closed), 1)
    await grant(opened.agenda, opened.ref, "*", "discover")
    portal = await app_client("portal", scope="system/*.rs")
    await grant(closed.agenda, closed.ref, portal.client_id, "discover")  # type: ignore[attr-defined]
    manifest, lines = await publication(portal)
    assert manifest["requiresAccessToken"] is True
    states = [o["extension"]["state"] for o in manifest["output"] if o["type"] == "Slot"]
    assert states == [["FR-69"], ["FR-75"]]
    assert set(statuses(lines["Slot"])) == {public_slot, closed_slot}
    async with anonymous(app) as public:
        _, seen = await publication(public)
        assert set(statuses(seen["Slot"])) == {public_slot}
        refused = await public.get("/fhir/$bulk-publish", headers={"Authorization": "Bearer x"})
    assert refused.status_code == 401
    assert refused.json()["resourceType"] == "OperationOutcome"


async def test_a_place_with_no_dose_on_hand_publishes_no_bookable_vaccination_slot(
    client: httpx.AsyncClient, app_client: AppClient, app: FastAPI
) -> None:
    centre = await open_owner(client, app_client, "Centre de vaccination", "93100")
    schedule = make_vaccination_schedule(ref(centre.location), ref(centre.role))
    schedule = await create(centre.agenda, schedule)
    slots = {await slot(centre, schedule, n) for n in (1, 2)}
    await grant(centre.agenda, centre.ref, "*", "discover")
    async with anonymous(app) as public:
        _, before = await publication(public)
        await create(centre.agenda, make_delivery(ref(centre.location), 1))
        _, after = await publication(public)
    assert statuses(before["Slot"]) == dict.fromkeys(slots, "busy")
    assert extension(before["Location"][0], "has-availability") == "none"
    assert extension(before["Schedule"][0], "vaccine-product")["code"] == "208"
    assert statuses(after["Slot"]) == dict.fromkeys(slots, "free")
    assert extension(after["Location"][0], "has-availability") == "some"


async def test_every_answer_can_be_cached_and_is_revalidated(
    client: httpx.AsyncClient, app_client: AppClient, app: FastAPI, time_travel: TimeTravel
) -> None:
    """The ETag also moves each `max-age` (60 s), as Slots leave the publication when they
    start: the clock is first moved to the start of such a step, so that the test lies in one."""
    seconds = time_travel.now().timestamp() % 60
    time_travel.forward(timedelta(seconds=60 - seconds + 0.01))
    owner = await open_owner(client, app_client, "Belleville", "75020")
    schedule = await consultations(owner)
    await slot(owner, schedule, 1)
    await grant(owner.agenda, owner.ref, "*", "discover")
    async with anonymous(app) as public:
        first = await public.get("/fhir/$bulk-publish")
        file = first.json()["output"][-1]["url"].removeprefix("http://test")
        files = await public.get(file)
        assert first.headers["cache-control"] == "public, max-age=60"
        for answer in (first, files):
            etag, modified = answer.headers["etag"], answer.headers["last-modified"]
            url = str(answer.request.url)
            assert (await public.get(url, headers={"If-None-Match": etag})).status_code == 304
            assert (
                await public.get(url, headers={"If-Modified-Since": modified})
            ).status_code == 304
        assert first.headers["etag"] != files.headers["etag"]
        await slot(owner, schedule, 2)
        again = await public.get(file, headers={"If-None-Match": files.headers["etag"]})
    assert again.status_code == 200 and again.headers["etag"] != files.headers["etag"]
    assert len(again.content.splitlines()) == 2
    private = await owner.agenda.get("/fhir/$bulk-publish")
    assert private.headers["cache-control"] == "private, max-age=60"
    assert private.headers["etag"] != first.headers["etag"]  # another reader, another copy


async def test_bad_requests_are_answered_with_an_operation_outcome(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    async with anonymous(app) as public:
        answers = {
            400: await public.get("/fhir/$bulk-publish", params={"_since": "yesterday"}),
            404: await public.get("/fhir/$bulk-publish/Slot/75-2-1.ndjson"),
            406: await public.get("/fhir/$bulk-publish", headers={"Accept": "application/xml"}),
        }
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        assert answer.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("/fhir/$bulk-publish/Appointment/all.ndjson")).status_code == 404


OVERLAP = 2.0  # seconds: the request budget, which `_since` reads that much earlier from


@pytest.fixture
async def quick(settings: Settings, time_travel: TimeTravel) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of an app whose requests have a short time budget: `_since` reads back
    only that far, so a test waits that long for the data before to be out of its reach."""
    quick = replace(settings, limits=replace(settings.limits, request_seconds=OVERLAP))
    application = create_app(quick, clock=time_travel.now)
    async with application.router.lifespan_context(application):
        registered, _ = await clients.create(application.state.store, name="admin", admin=True)
        token = await application.state.authority.issue(registered)
        transport = httpx.ASGITransport(app=application)
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as http:
            yield http


async def test_since_gives_what_changed_cancelled_and_deleted_slots_included(
    quick: httpx.AsyncClient,
) -> None:
    location = {**make_location(), "telecom": [{"system": "phone", "value": PHONE}]}
    location["address"]["line"] = ["1 rue Haxo"]
    location = await create(quick, location)
    patient = await create(quick, make_patient())
    kept, switched = [
        await create(quick, make_schedule(ref(location), serviceType=[CONSULTATION]))
        for _ in range(2)
    ]
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    taken_off, deleted, untouched, booked, off = [
        (await create(quick, make_slot(ref(s), start + timedelta(hours=n))))["id"]
        for n, s in enumerate((kept, kept, kept, kept, switched))
    ]
    appointment = appointment_in(
        await operate(quick, "Appointment/$book", ("appt-resource", booking(booked, patient)))
    )
    await asyncio.sleep(OVERLAP + 0.2)
    manifest, _ = await publication(quick)
    since = manifest["transactionTime"]

    body = (await quick.get(f"/fhir/Slot/{taken_off}")).json()
    await quick.put(
        f"/fhir/Slot/{taken_off}", json={**body, "status": "busy-unavailable"}, headers=FHIR_JSON
    )
    assert (await quick.delete(f"/fhir/Slot/{deleted}")).status_code in (200, 204)
    await operate(quick, f"Appointment/{appointment['id']}/$cancel", ("reason", "changed mind"))
    added = (await create(quick, make_slot(ref(kept), start + timedelta(hours=9))))["id"]
    await quick.put(
        f"/fhir/Schedule/{switched['id']}", json={**switched, "active": False}, headers=FHIR_JSON
    )

    delta_manifest, delta = await publication(quick, _since=since)
    assert all(since.replace(":", "%3A") in o["url"] for o in delta_manifest["output"])
    assert statuses(delta["Slot"]) == {
        taken_off: "busy",
        deleted: "busy",
        booked: "free",
        added: "free",
        off: "busy",
    }
    assert [(s["id"], s["active"]) for s in delta["Schedule"]] == [(switched["id"], False)]
    assert [line["id"] for line in delta["Location"]] == [location["id"]]
    _, full = await publication(quick)
    assert statuses(full["Slot"]) == {untouched: "free", booked: "free", added: "free"}
    assert untouched not in statuses(delta["Slot"])
