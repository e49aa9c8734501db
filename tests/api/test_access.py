"""Owners decide who sees and books: closed by default, grants, the hospital portal, an app's
own bookings, patients, owner-only changes, scopes, quotas. On both stores."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from server.config import Settings
from tests.api.access_setup import grant, open_owner, revoke, visible_slots
from tests.api.scheduling_setup import WINDOW, booking, refusal, slots_of
from tests.api.test_concurrency import skip_on_test_mongodb
from tests.conftest import AppClient
from tests.factories import (
    FHIR_JSON,
    create,
    make_delivery,
    make_location,
    make_patient,
    operate,
    parameters,
    ref,
)


async def book(app: httpx.AsyncClient, slot_id: str, patient: dict) -> httpx.Response:
    body = parameters(("appt-resource", booking(slot_id, patient)))
    return await app.post("/fhir/Appointment/$book", json=body, headers=FHIR_JSON)


async def test_a_schedule_is_closed_until_its_owner_grants(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner = await open_owner(client, app_client, "Hôpital Nord")
    app = await app_client("booking-app")
    patient = await create(app, make_patient())
    first = owner.slots[0]

    assert await visible_slots(app) == set()
    assert (await app.get(f"/fhir/Slot/{first}")).status_code == 404
    assert (await app.get(f"/fhir/{ref(owner.schedule)}")).status_code == 404
    assert slots_of(await _find(app)) == []
    assert (await app.get("/fhir/Slot", params={"_summary": "count"})).json()["total"] == 0
    refusal(await book(app, first, patient), 404)

    assert (await grant(owner.agenda, owner.ref, app.client_id, "discover")).status_code == 201
    assert await visible_slots(app) == set(owner.slots)
    assert set(slots_of(await _find(app))) == set(owner.slots)
    assert "book" in refusal(await book(app, first, patient), 403)

    assert (await grant(owner.agenda, owner.ref, app.client_id, "book")).status_code == 200
    assert (await book(app, first, patient)).status_code == 201

    assert (await revoke(owner.agenda, owner.ref, app.client_id)).status_code == 200
    assert await visible_slots(app) == set()
    refusal(await book(app, owner.slots[1], patient), 404)


async def test_everyone_may_discover_a_public_owner_but_not_book(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner = await open_owner(client, app_client, "Centre public")
    app = await app_client("any-app")
    patient = await create(app, make_patient())
    assert (await grant(owner.agenda, owner.ref, "*", "discover")).status_code == 201
    assert await visible_slots(app) == set(owner.slots)
    refusal(await book(app, owner.slots[0], patient), 403)
    refusal(await grant(owner.agenda, owner.ref, "*", "book"), 400)


async def test_the_hospital_portal_sees_and_books_the_group_only(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    group = await create(client, {"resourceType": "Organization", "name": "Groupe hospitalier"})
    hospital = await open_owner(client, app_client, "Hôpital Sud", parent=group)
    clinic = await open_owner(client, app_client, "Clinique privée")
    await grant(clinic.agenda, clinic.ref, "*", "discover")  # the clinic is public, but not ...
    portal = await app_client("hospital-portal")
    assert (
        await grant(hospital.agenda, ref(group), portal.client_id, "discover", "book")
    ).status_code == 201
    portal_only = await app_client("portal-strict")  # ... to a client of the group's own portal
    await grant(hospital.agenda, ref(group), portal_only.client_id, "book")
    await revoke(clinic.agenda, clinic.ref, "*")

    assert await visible_slots(portal) == set(hospital.slots)
    assert set(slots_of(await _find(portal))) == set(hospital.slots)
    chained = await visible_slots(
        portal, **{"schedule.actor:PractitionerRole.organization": ref(clinic.organization)}
    )
    assert chained == set()
    has = await portal.get(
        "/fhir/Schedule", params={"_has:Slot:schedule:status": "free", "_include": "Schedule:actor"}
    )
    schedules = [e["resource"]["id"] for e in has.json()["entry"] if e["search"]["mode"] == "match"]
    assert schedules == [hospital.schedule["id"]]
    included = await portal.get(
        "/fhir/Slot",
        params={"_include": "Slot:schedule", "_id": ",".join(clinic.slots + hospital.slots)},
    )
    kinds = Counter(e["resource"]["resourceType"] for e in included.json()["entry"])
    assert kinds == Counter({"Slot": 3, "Schedule": 1})

    patient = await create(portal, make_patient())
    assert (await book(portal, hospital.slots[0], patient)).status_code == 201
    refusal(await book(portal, clinic.slots[0], patient), 404)


async def test_an_app_sees_and_cancels_only_its_own_bookings(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner = await open_owner(client, app_client, "Maison de santé")
    one, two = await app_client("app-one"), await app_client("app-two")
    for app in (one, two):
        await grant(owner.agenda, owner.ref, app.client_id, "book")
    mine = await book(one, owner.slots[0], await create(one, make_patient("Un")))
    theirs = await book(two, owner.slots[1], await create(two, make_patient("Deux")))
    mine_id = mine.json()["entry"][0]["resource"]["id"]
    theirs_id = theirs.json()["entry"][0]["resource"]["id"]

    assert (await one.get(f"/fhir/Appointment/{theirs_id}")).status_code == 404
    listed = (await one.get("/fhir/Appointment")).json()
    assert [e["resource"]["id"] for e in listed["entry"]] == [mine_id]
    reason = ("reason", "patient asked")
    refusal(await operate(one, f"Appointment/{theirs_id}/$cancel", reason), 404)
    refusal(await one.get(f"/fhir/Appointment/{theirs_id}/_history"), 404)
    assert (await operate(one, f"Appointment/{mine_id}/$cancel", reason)).status_code == 200

    seen = (await owner.agenda.get("/fhir/Appointment")).json()
    assert {e["resource"]["id"] for e in seen["entry"]} == {mine_id, theirs_id}
    assert (
        await operate(owner.agenda, f"Appointment/{theirs_id}/$cancel", reason)
    ).status_code == 200


async def test_an_app_reads_and_books_for_its_own_patients_only(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner = await open_owner(client, app_client, "Cabinet")
    one, two = await app_client("app-one"), await app_client("app-two")
    await grant(owner.agenda, owner.ref, two.client_id, "book")
    patient = await create(one, make_patient("Secret"))
    assert (await two.get(f"/fhir/Patient/{patient['id']}")).status_code == 404
    assert (await two.get("/fhir/Patient", params={"family": "Secret"})).json().get("total") == 0
    refusal(await book(two, owner.slots[0], patient), 422)
    # booked for by an app, the patient becomes readable by the schedule's owner
    own = await create(two, make_patient("Booked"))
    assert (await book(two, owner.slots[0], own)).status_code == 201
    assert (await owner.agenda.get(f"/fhir/Patient/{own['id']}")).status_code == 200
    assert (await owner.agenda.get(f"/fhir/Patient/{patient['id']}")).status_code == 404


async def test_only_the_owner_changes_its_schedules_and_cancels_in_bulk(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner = await open_owner(client, app_client, "Cabinet du Dr Roux")
    app = await app_client("booking-app", scope="system/*.cruds")
    await grant(owner.agenda, owner.ref, app.client_id, "book")
    schedule = owner.schedule
    vaccinating = {**schedule, "serviceType": [{"coding": [{"code": "57"}]}]}
    refusal(
        await app.put(f"/fhir/Schedule/{schedule['id']}", json=vaccinating, headers=FHIR_JSON), 403
    )
    refusal(
        await app.put(
            f"/fhir/Schedule/{schedule['id']}",
            json={**schedule, "active": False},
            headers=FHIR_JSON,
        ),
        403,
    )
    slot = (await app.get(f"/fhir/Slot/{owner.slots[0]}")).json()
    refusal(
        await app.put(
            f"/fhir/Slot/{slot['id']}",
            json={**slot, "status": "busy-unavailable"},
            headers=FHIR_JSON,
        ),
        403,
    )
    refusal(await app.delete(f"/fhir/Slot/{slot['id']}"), 403)
    refusal(
        await operate(app, f"Schedule/{schedule['id']}/$cancel-appointments", ("reason", "x")), 403
    )
    refusal(await operate(app, f"Schedule/{schedule['id']}/$generate-slots"), 403)
    place = await create(
        client, {**make_location(), "managingOrganization": {"reference": owner.ref}}
    )
    refusal(
        await app.post(
            "/fhir/SupplyDelivery", json=make_delivery(ref(place), 10), headers=FHIR_JSON
        ),
        403,
    )
    refusal(await grant(app, owner.ref, app.client_id, "manage"), 403)
    # a stranger's own Schedule naming the owner's practitioner is not the stranger's to make
    refusal(
        await app.post(
            "/fhir/Schedule",
            json={k: v for k, v in schedule.items() if k not in ("id", "meta")},
            headers=FHIR_JSON,
        ),
        403,
    )

    assert (
        await owner.agenda.post(
            "/fhir/SupplyDelivery", json=make_delivery(ref(place), 10), headers=FHIR_JSON
        )
    ).status_code == 201
    await grant(owner.agenda, owner.ref, app.client_id, "manage")
    assert (
        await app.put(
            f"/fhir/Slot/{slot['id']}",
            json={**slot, "status": "busy-unavailable"},
            headers=FHIR_JSON,
        )
    ).status_code == 200


async def test_scopes_are_enforced_on_each_interaction(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    owner = await open_owner(client, app_client, "Centre")
    reader = await app_client("reader", scope="system/Slot.rs")
    await grant(owner.agenda, owner.ref, reader.client_id, "book")
    assert await visible_slots(reader) == set(owner.slots)
    included = await reader.get("/fhir/Slot", params={"_include": "Slot:schedule"})
    assert {e["resource"]["resourceType"] for e in included.json()["entry"]} == {"Slot"}
    assert "system/Schedule.r" in refusal(await reader.get(f"/fhir/{ref(owner.schedule)}"), 403)
    assert "system/Patient.c" in refusal(
        await reader.post("/fhir/Patient", json=make_patient(), headers=FHIR_JSON), 403
    )
    assert "system/Appointment.c" in refusal(
        await operate(
            reader, "Appointment/$book", ("slot", {"reference": f"Slot/{owner.slots[0]}"})
        ),
        403,
    )
    entry = {"request": {"method": "POST", "url": "Patient"}, "resource": make_patient()}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    refusal(await reader.post("/fhir", json=bundle, headers=FHIR_JSON), 403)
    batch = await reader.post("/fhir", json={**bundle, "type": "batch"}, headers=FHIR_JSON)
    assert batch.json()["entry"][0]["response"]["status"].startswith("403")
    refusal(await reader.get("/fhir/Slot/_history"), 403)


async def test_no_token_no_access(client: httpx.AsyncClient, app: object) -> None:
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")  # type: ignore[arg-type]
    async with anonymous:
        response = await anonymous.get("/fhir/Slot")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
        assert (await anonymous.get("/fhir/metadata")).status_code == 200


async def test_the_daily_quota_holds(client: httpx.AsyncClient, app_client: AppClient) -> None:
    owner = await open_owner(client, app_client, "Quota", slots=4)
    app = await app_client("capped")
    await grant(owner.agenda, owner.ref, app.client_id, "book", quota=2)
    patient = await create(app, make_patient())
    statuses = [(await book(app, slot, patient)).status_code for slot in owner.slots[:3]]
    assert statuses == [201, 201, 429]
    assert (await book(owner.agenda, owner.slots[3], patient)).status_code == 201  # owner: no cap


async def test_the_quota_holds_under_concurrent_bookings(
    settings: Settings, client: httpx.AsyncClient, app_client: AppClient
) -> None:
    skip_on_test_mongodb(settings)
    owner = await open_owner(client, app_client, "Quota concurrent", slots=20)
    app = await app_client("capped")
    await grant(owner.agenda, owner.ref, app.client_id, "book", quota=5)
    patient = await create(app, make_patient())
    responses = await asyncio.gather(*(book(app, slot, patient) for slot in owner.slots))
    assert Counter(r.status_code for r in responses) == Counter({201: 5, 429: 15})


async def _find(app: httpx.AsyncClient) -> dict:
    response = await app.get("/fhir/Appointment/$find", params=WINDOW)
    assert response.status_code == 200, response.text
    bundle: dict = response.json()
    return bundle


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
