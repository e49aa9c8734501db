"""The audit trail: an AuditEvent for every write and operation, a Provenance for every booking,
cancellation and reschedule, both in the transaction of the change, readable by the owner only,
append-only; refusals audited apart. On both stores."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from typing import Any

import httpx
import orjson
from fastapi import FastAPI

from server.app import create_app
from server.audit.queue import AuditQueue
from server.auth import clients
from server.config import Settings
from server.fhir import resources
from tests.api.access_setup import Owner, grant, open_owner
from tests.api.scheduling_setup import booking, refusal
from tests.api.test_concurrency import skip_on_test_mongodb
from tests.conftest import AppClient
from tests.factories import FHIR_JSON, appointment_in, create, make_patient, operate

CLIENT = "https://fhir.creneau.org/client"
CHANGE = "https://fhir.creneau.org/CodeSystem/appointment-change"


async def entries(client: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"/fhir/{path}", params={"_count": "200", **params})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def changes(provenances: list[dict[str, Any]]) -> list[str]:
    return sorted(
        c["code"] for p in provenances for c in p["activity"]["coding"] if c["system"] == CHANGE
    )


def requestor(event: dict[str, Any]) -> str:
    agent = next(a for a in event["agent"] if a["requestor"])
    value: str = agent["who"].get("identifier", {}).get("value", agent["who"].get("display"))
    return value


async def flushed(app: FastAPI) -> None:
    await app.state.audit.flush()


async def booking_owner(client: httpx.AsyncClient, app_client: AppClient) -> tuple[Owner, Any]:
    owner = await open_owner(client, app_client, "Hôpital Nord", slots=4)
    app = await app_client("booking-app")
    await grant(owner.agenda, owner.ref, app.client_id, "book")
    return owner, app


async def test_every_booking_path_leaves_an_audit_event_and_a_provenance(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner, app = await booking_owner(client, app_client)
    patient = await create(app, make_patient())
    by_operation = appointment_in(
        await operate(app, "Appointment/$book", ("appt-resource", booking(owner.slots[0], patient)))
    )
    by_rest = await create(app, {**booking(owner.slots[1], patient), "status": "booked"})
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**booking(owner.slots[2], patient), "status": "booked"},
                "request": {"method": "POST", "url": "Appointment"},
            }
        ],
    }
    response = await app.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    by_bundle = response.json()["entry"][0]["resource"]

    for appointment in (by_operation, by_rest, by_bundle):
        target = f"Appointment/{appointment['id']}"
        version = f"{target}/_history/{appointment['meta']['versionId']}"
        provenances = await entries(owner.agenda, "Provenance", target=target)
        assert changes(provenances) == ["book"]
        assert provenances[0]["target"] == [{"reference": version}]
        assert provenances[0]["agent"][0]["who"]["identifier"] == {
            "system": CLIENT,
            "value": app.client_id,
        }
        events = await entries(owner.agenda, "AuditEvent", entity=target)
        assert [requestor(e) for e in events] == [app.client_id]
        assert events[0]["outcome"] == "0"
        assert {"reference": version} in [e.get("what") for e in events[0]["entity"]]
        for body in (*provenances, *events):
            resources.validate(body, body["resourceType"])  # valid R4B, as stored

    kinds = {c["code"] for e in await entries(owner.agenda, "AuditEvent") for c in e["subtype"]}
    assert {"operation", "book", "create", "transaction"} <= kinds
    revincluded = await entries(
        owner.agenda,
        "Appointment",
        _id=by_operation["id"],
        _revinclude="Provenance:target",
    )
    assert sorted(r["resourceType"] for r in revincluded) == ["Appointment", "Provenance"]


async def test_the_trail_is_the_owners_only(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner, app = await booking_owner(client, app_client)
    other = await open_owner(client, app_client, "Clinique privée")
    patient = await create(app, make_patient())
    made = appointment_in(
        await operate(app, "Appointment/$book", ("appt-resource", booking(owner.slots[0], patient)))
    )
    target = f"Appointment/{made['id']}"
    assert len(await entries(owner.agenda, "Provenance", target=target)) == 1
    assert await entries(other.agenda, "Provenance", target=target) == []
    assert await entries(other.agenda, "AuditEvent", entity=target) == []
    assert await entries(app, "AuditEvent", entity=target) == []
    assert await entries(app, "Provenance") == []
    provenance_id = (await entries(owner.agenda, "Provenance", target=target))[0]["id"]
    assert (await app.get(f"/fhir/Provenance/{provenance_id}")).status_code == 404
    assert (await other.agenda.get(f"/fhir/Provenance/{provenance_id}")).status_code == 404


async def test_cancel_and_reschedule_have_their_provenance(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner, app = await booking_owner(client, app_client)
    patient = await create(app, make_patient())
    made = appointment_in(
        await operate(app, "Appointment/$book", ("appt-resource", booking(owner.slots[0], patient)))
    )
    url = f"/fhir/Appointment/{made['id']}"
    moved = {**made, "slot": [{"reference": f"Slot/{owner.slots[1]}"}]}
    moved.pop("start"), moved.pop("end")
    response = await app.put(url, json=moved, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    cancelled = await operate(app, f"Appointment/{made['id']}/$cancel", ("reason", "unwell"))
    assert cancelled.status_code == 200, cancelled.text

    provenances = await entries(owner.agenda, "Provenance", target=f"Appointment/{made['id']}")
    assert changes(provenances) == ["book", "cancel", "reschedule"]
    by_version = {p["target"][0]["reference"].rsplit("/", 1)[1]: p for p in provenances}
    assert by_version["3"]["entity"] == [
        {"role": "revision", "what": {"reference": f"Appointment/{made['id']}/_history/2"}}
    ]


async def test_a_refused_booking_leaves_only_its_refusal(
    client: httpx.AsyncClient, app_client: AppClient, app: FastAPI
) -> None:
    owner, booker = await booking_owner(client, app_client)
    patient = await create(booker, make_patient())
    first = await operate(
        booker, "Appointment/$book", ("appt-resource", booking(owner.slots[0], patient))
    )
    assert first.status_code == 201
    provenances = len(await entries(client, "Provenance"))
    taken = booking(owner.slots[0], patient, identifier=[{"system": "urn:app", "value": "b2"}])
    refusal(await operate(booker, "Appointment/$book", ("appt-resource", taken)))
    rolled_back = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**booking(owner.slots[1], patient), "status": "booked"},
                "request": {"method": "POST", "url": "Appointment"},
            },
            {"request": {"method": "DELETE", "url": f"Slot/{owner.slots[0]}"}},
        ],
    }
    assert (await booker.post("/fhir", json=rolled_back, headers=FHIR_JSON)).status_code == 403
    assert len(await entries(client, "Provenance")) == provenances
    assert await entries(client, "Appointment", slot=f"Slot/{owner.slots[1]}") == []

    await flushed(app)
    refused = await entries(client, "AuditEvent", outcome="4")
    assert sorted(e["subtype"][0]["code"] for e in refused) == ["operation", "transaction"]
    assert all(requestor(e) == booker.client_id for e in refused)
    assert all("entity" not in e for e in refused)  # nothing they named was written
    assert any("409" in e["outcomeDesc"] for e in refused)


async def test_refusals_are_audited_anonymous_ones_too(
    client: httpx.AsyncClient, app_client: AppClient, app: FastAPI
) -> None:
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    async with anonymous:
        assert (await anonymous.get("/fhir/Slot")).status_code == 401
    reader = await app_client("reader", scope="system/Slot.rs")
    assert (await reader.get("/fhir/Patient")).status_code == 403
    assert (await reader.get("/fhir/Slot")).status_code == 200  # a read: not audited

    await flushed(app)
    events = await entries(client, "AuditEvent", outcome="4")
    assert sorted(requestor(e) for e in events) == sorted(
        [reader.client_id, "unauthenticated caller"]
    )
    for event in events:
        resources.validate(event, "AuditEvent")


async def test_the_trail_is_append_only(client: httpx.AsyncClient, app_client: AppClient) -> None:
    owner, app = await booking_owner(client, app_client)
    patient = await create(app, make_patient())
    await operate(app, "Appointment/$book", ("appt-resource", booking(owner.slots[0], patient)))
    for kind in ("AuditEvent", "Provenance"):
        found = (await entries(client, kind))[0]
        url = f"/fhir/{kind}/{found['id']}"
        refusal(await client.put(url, json=found, headers=FHIR_JSON), 405)
        patch = orjson.dumps([{"op": "remove", "path": "/agent/0"}])
        headers = {"Content-Type": "application/json-patch+json"}
        refusal(await client.patch(url, content=patch, headers=headers), 405)
        refusal(await client.delete(url), 405)
        refusal(await client.delete(f"/fhir/{kind}", params={"_id": found["id"]}), 405)
        assert (await client.get(url)).json() == found


async def test_racing_bookings_leave_one_provenance(
    client: httpx.AsyncClient, app_client: AppClient, settings: Settings
) -> None:
    skip_on_test_mongodb(settings)
    owner, app = await booking_owner(client, app_client)
    patients = [await create(app, make_patient(given=f"P{i}")) for i in range(10)]
    racing = await asyncio.gather(
        *(
            operate(app, "Appointment/$book", ("appt-resource", booking(owner.slots[0], p)))
            for p in patients
        )
    )
    assert sorted(r.status_code for r in racing) == [201] + [409] * 9
    assert changes(await entries(owner.agenda, "Provenance")) == ["book"]
    booked = [e for e in await entries(owner.agenda, "AuditEvent") if e["outcome"] == "0"]
    assert [c["code"] for e in booked for c in e["subtype"]].count("book") == 1


async def test_reads_are_audited_when_the_operator_asks(settings: Settings) -> None:
    for audit_reads, expected in ((False, []), (True, ["status=free"])):
        application = create_app(replace(settings, sandbox=True, audit_reads=audit_reads))
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                assert (await http.get("/fhir/Slot", params={"status": "free"})).status_code == 200
                await flushed(application)
                found = await entries(http, "AuditEvent", subtype="search-type")
        slot_searches = [
            base64.b64decode(entity["query"]).decode()
            for event in found
            for entity in event.get("entity", [])
            if entity.get("description") == "query on Slot" and event["action"] == "R"
        ]
        assert slot_searches == expected


async def test_a_full_queue_counts_what_it_could_not_keep(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    queue = AuditQueue(app.state.store, "http://test/fhir", app.state.policy.now, limit=2)
    for _ in range(5):
        queue.put({**_minimal_event(), "outcomeDesc": "refused"})
    assert await queue.flush() == 3
    assert await queue.flush() == 0
    [overflow] = await entries(client, "AuditEvent", outcome="8")
    assert overflow["outcomeDesc"].startswith("3 refused or read request(s)")


def _minimal_event() -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "type": {"code": "rest"},
        "recorded": "2026-12-03T10:00:00Z",
        "agent": [{"who": {"display": "x"}, "requestor": True}],
        "source": {"observer": {"display": "Créneau"}},
    }


async def test_the_background_writer_writes_refusals(settings: Settings) -> None:
    skip_on_test_mongodb(settings)  # it writes while requests run
    application = create_app(replace(settings, audit_flush_seconds=0.05))
    async with application.router.lifespan_context(application):
        registered, _ = await clients.create(application.state.store, name="operator", admin=True)
        token = (await application.state.authority.issue(registered))["access_token"]
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/fhir/Appointment/x")).status_code == 401
            http.headers["Authorization"] = f"Bearer {token}"
            for _ in range(100):  # written within a few intervals, without any flush here
                await asyncio.sleep(0.05)
                if found := await entries(http, "AuditEvent", outcome="4"):
                    break
    assert [requestor(e) for e in found] == ["unauthenticated caller"]
