"""The sandbox's scenarios over HTTP, on both stores: `POST /sandbox/reset?scenario=NAME` empties
the store and loads the scenario, whose story is then checked as a booking app sees it; outside
sandbox mode the routes do not exist. And loading a data set twice adds nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fixtures import identifiers
from fixtures.codes import FIXTURES, RPPS
from fixtures.generator import generate
from fixtures.loading import Loader, Memory
from fixtures.sizes import Size
from server.app import create_app
from server.auth import clients
from server.config import Settings

VACCINATION = "http://terminology.hl7.org/CodeSystem/service-type|57"


@pytest.fixture
async def sandbox(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(replace(settings, sandbox=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


@pytest.fixture
async def auth_on(settings: Settings, sandbox: httpx.AsyncClient) -> AsyncIterator[FastAPI]:
    """A second app, auth on, over the sandbox's store: how a booking app sees the scenario."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def as_app(app: FastAPI, client_id: str) -> httpx.AsyncClient:
    token = await app.state.authority.issue(await clients.get_or_raise(app.state.store, client_id))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )


async def reset(http: httpx.AsyncClient, scenario: str) -> dict[str, Any]:
    answer = await http.post("/sandbox/reset", params={"scenario": scenario})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert body["scenario"] == scenario and not body["refused"], body
    return body


async def one(http: httpx.AsyncClient, path: str) -> dict[str, Any]:
    found = (await http.get(f"/fhir/{path}")).json()
    assert len(found.get("entry", [])) == 1, found
    resource: dict[str, Any] = found["entry"][0]["resource"]
    return resource


def window(days: int = 6) -> dict[str, str]:
    now = datetime.now(UTC)
    return {"start": now.isoformat(), "end": (now + timedelta(days=days)).isoformat()}


async def test_no_sandbox_routes_outside_sandbox_mode(client: httpx.AsyncClient) -> None:
    assert (await client.get("/sandbox")).status_code == 404
    refused = await client.post("/sandbox/reset", params={"scenario": "demo"})
    assert refused.status_code == 404
    assert refused.json()["resourceType"] == "OperationOutcome"


async def test_lists_the_scenarios_and_refuses_an_unknown_one(sandbox: httpx.AsyncClient) -> None:
    listed = (await sandbox.get("/sandbox")).json()["scenarios"]
    assert {s["name"] for s in listed} == {
        "demo",
        "phantom-vaccination",
        "hospital-portal",
        "mass-centre",
        "sas-aggregator",
    }
    assert all(s["description"] for s in listed)
    unknown = await sandbox.post("/sandbox/reset", params={"scenario": "nope"})
    assert unknown.status_code == 400


async def test_phantom_vaccination(sandbox: httpx.AsyncClient) -> None:
    """The GP offers vaccination on paper only: nothing to find, and a slot published behind
    their back (here by the sandbox's admin) cannot be booked: no dose."""
    await reset(sandbox, "phantom-vaccination")
    schedule = await one(sandbox, f"Schedule?identifier={FIXTURES}|fx-vac-62-fantome")
    gp = next(a["reference"] for a in schedule["actor"] if a["reference"].startswith("Pract"))
    found = await sandbox.get(
        "/fhir/Appointment/$find",
        params={**window(), "service-type": VACCINATION, "practitioner": gp},
    )
    assert found.status_code == 200 and not found.json().get("entry"), found.text
    nearby = await sandbox.get(
        "/fhir/Appointment/$find",
        params={**window(), "service-type": VACCINATION, "address-postalcode": "62"},
    )
    assert nearby.json().get("entry"), "the pharmacy nearby has doses and slots"
    begins = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    slot = await sandbox.post(
        "/fhir/Slot",
        json={
            "resourceType": "Slot",
            "schedule": {"reference": f"Schedule/{schedule['id']}"},
            "serviceType": [{"coding": [{"system": VACCINATION.split("|")[0], "code": "57"}]}],
            "status": "free",
            "start": begins.isoformat(),
            "end": (begins + timedelta(minutes=10)).isoformat(),
        },
    )
    assert slot.status_code == 201, slot.text
    patient = await one(sandbox, "Patient?_count=1")
    booked = await sandbox.post(
        "/fhir/Appointment/$book", json=_booking(slot.json()["id"], patient["id"])
    )
    assert booked.status_code == 409 and "No dose" in booked.text, booked.text


async def test_hospital_portal(sandbox: httpx.AsyncClient, auth_on: FastAPI) -> None:
    """The group's portal sees the group's hospitals' schedules only; the clinics' app the
    clinics' only."""
    await reset(sandbox, "hospital-portal")
    group = await one(sandbox, "Organization?name=Assistance")
    hospitals = (await sandbox.get(f"/fhir/Organization?partof=Organization/{group['id']}")).json()
    hospital_ids = {f"Organization/{e['resource']['id']}" for e in hospitals["entry"]}
    assert len(hospital_ids) == 2
    owned = await _schedules_owned_by(sandbox, hospital_ids)
    seen = {}
    for app in ("fx-portail", "fx-rdv"):
        async with await as_app(auth_on, app) as http:
            found = (await http.get("/fhir/Schedule", params={"_count": 50})).json()
        seen[app] = {e["resource"]["id"] for e in found.get("entry", [])}
    assert len(owned) == 2 and seen["fx-portail"] == owned
    assert len(seen["fx-rdv"]) == 2 and not seen["fx-rdv"] & owned


async def test_mass_centre(sandbox: httpx.AsyncClient) -> None:
    """37 of 40 doses booked: three left, and no more than three vaccinations offered."""
    await reset(sandbox, "mass-centre")
    stadium = await one(sandbox, "Location?name=Vaccinodrome")
    doses = (await sandbox.get(f"/fhir/Location/{stadium['id']}/$doses")).json()
    parts = {p["name"]: p.get("valueInteger") for p in doses["parameter"][0]["part"]}
    assert (parts["delivered"], parts["reserved"], parts["available"]) == (40, 37, 3)
    found = await sandbox.get(
        "/fhir/Appointment/$find",
        params={**window(3), "service-type": VACCINATION, "location": f"Location/{stadium['id']}"},
    )
    assert len(found.json().get("entry", [])) == 3


async def test_sas_aggregator(sandbox: httpx.AsyncClient) -> None:
    """The kit's query by RPPS finds each practitioner's free slots with their Schedule,
    Practitioner and PractitionerRole, for the audiences they chose."""
    await reset(sandbox, "sas-aggregator")
    rpps = ",".join(f"{RPPS}|{identifiers.rpps(90_400_000 + n)}" for n in (1, 2, 3))
    now = datetime.now(UTC)
    query = (
        "_include=Slot:schedule&_include:iterate=Schedule:actor"
        f"&schedule.actor:Practitioner.identifier={rpps}&status=free"
        f"&start=ge{now:%Y-%m-%dT%H:%M:%S}.000+00:00"
        f"&start=le{now + timedelta(days=6):%Y-%m-%dT%H:%M:%S}.000+00:00&_count=1000"
    )
    bundle = (await sandbox.get(f"/fhir/Slot?{query}")).json()
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Slot", "Schedule", "Practitioner", "PractitionerRole"} <= kinds
    practitioners = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Practitioner"]
    assert len(practitioners) == 3
    audiences = {
        c["code"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Slot"
        for c in e["resource"]["meta"].get("security", [])
        if "TRE-R314" in c.get("system", "")
    }
    assert {"PUBLIC", "PRO", "SNP", "CPTS"} <= audiences


async def test_loading_twice_adds_nothing(sandbox: httpx.AsyncClient) -> None:
    app = sandbox.app  # type: ignore[attr-defined]
    small = Size("small", practitioners=2, vaccination_sites=1, group_hospitals=0, days=2)
    data = list(generate(replace(small, departments=("2A",)), 5, date.today() + timedelta(days=1)))
    first = await _load(app, data)
    again = await _load(app, data)
    assert sum(first.created.values()) == len(data) and not first.refused
    assert not again.created and sum(again.existing.values()) == len(data)


async def _load(app: FastAPI, data: list[dict[str, Any]]) -> Any:
    state = app.state
    loader = Loader(
        state.store, state.settings.fhir_base, state.policy, profiles=state.conformance.by_url
    )
    return await loader.load(Memory(data, []))


async def _schedules_owned_by(sandbox: httpx.AsyncClient, owners: set[str]) -> set[str]:
    """The Schedules labelled with these owners (the labels are searched, not shown)."""
    owner = "https://fhir.creneau.org/CodeSystem/owner"
    wanted = ",".join(f"{owner}|{o}" for o in sorted(owners))
    found = (await sandbox.get("/fhir/Schedule", params={"_security": wanted})).json()
    return {e["resource"]["id"] for e in found.get("entry", [])}


def _booking(slot_id: str, patient_id: str) -> dict[str, Any]:
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"}],
    }
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appt-resource", "resource": appointment}],
    }
