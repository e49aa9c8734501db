"""`$find`: only slots bookable right now, as proposed Appointments, filtered and sorted."""

from __future__ import annotations

from datetime import timedelta

import httpx

from tests.api.scheduling_setup import (
    TOMORROW,
    WINDOW,
    add_slots,
    booking,
    find,
    open_practice,
    refusal,
    slots_of,
)
from tests.factories import (
    CONSULTATION,
    FHIR_JSON,
    create,
    make_delivery,
    make_location,
    make_practitioner,
    make_schedule,
    operate,
    parameters,
    ref,
)


async def test_find_proposes_free_slots_sorted_by_start(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    later = await add_slots(client, practice.consultations, 2, first=TOMORROW + timedelta(hours=2))
    earlier = await add_slots(client, practice.consultations, 2)
    bundle = await find(client)
    assert bundle["type"] == "searchset"
    assert slots_of(bundle) == earlier + later
    proposal = bundle["entry"][0]["resource"]
    assert proposal["status"] == "proposed" and proposal["id"] == f"p-{earlier[0]}"
    assert proposal["serviceType"] == [CONSULTATION]
    actors = {p["actor"]["reference"] for p in proposal["participant"]}
    assert actors == {ref(practice.practitioner), practice.place}
    assert bundle["entry"][0]["fullUrl"].startswith("urn:uuid:")
    assert slots_of(await find(client, _count="3")) == (earlier + later)[:3]


async def test_find_offers_only_what_can_be_booked(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    booked, held, blocked, free = await add_slots(client, practice.consultations, 4)
    await operate(
        client, "Appointment/$book", ("appt-resource", booking(booked, practice.patients[0]))
    )
    await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{held}"}))
    slot = (await client.get(f"/fhir/Slot/{blocked}")).json()
    await client.put(
        f"/fhir/Slot/{blocked}", json={**slot, "status": "busy-unavailable"}, headers=FHIR_JSON
    )
    await add_slots(client, practice.vaccinations, 2)  # no doses delivered: never offered
    assert slots_of(await find(client)) == [free]
    schedule = {**practice.consultations, "active": False}
    await client.put(f"/fhir/Schedule/{schedule['id']}", json=schedule, headers=FHIR_JSON)
    assert slots_of(await find(client)) == []


async def test_find_filters(client: httpx.AsyncClient) -> None:
    paris = await open_practice(client)
    paris_slots = await add_slots(client, paris.consultations, 1)
    lyon_doctor = await create(client, make_practitioner("810000000029", "Bernard"))
    lyon = await create(client, make_location("Cabinet Lyon", "69004"))
    lyon_schedule = await create(
        client,
        {
            **make_schedule(ref(lyon_doctor), serviceType=[CONSULTATION]),
            "actor": [{"reference": ref(lyon_doctor)}, {"reference": ref(lyon)}],
        },
    )
    lyon_slots = await add_slots(client, lyon_schedule, 1)
    await create(client, make_delivery(paris.place, 1))
    vaccination_slots = await add_slots(
        client, paris.vaccinations, 1, first=TOMORROW + timedelta(hours=5)
    )
    assert slots_of(await find(client, practitioner=ref(lyon_doctor))) == lyon_slots
    assert slots_of(await find(client, location=paris.place)) == paris_slots + vaccination_slots
    assert slots_of(await find(client, **{"address-postalcode": "69"})) == lyon_slots
    assert (
        slots_of(await find(client, **{"address-postalcode": "75020"}))
        == paris_slots + vaccination_slots
    )
    immunization = "http://terminology.hl7.org/CodeSystem/service-type|57"
    assert slots_of(await find(client, **{"service-type": immunization})) == vaccination_slots
    assert (
        slots_of(await find(client, **{"service-type": "124", "location": paris.place}))
        == paris_slots
    )


async def test_find_includes_and_post_form(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    body = parameters(
        ("start", WINDOW["start"]),
        ("end", WINDOW["end"]),
        ("_include", "Appointment:slot"),
        ("_include", "Appointment:practitioner"),
    )
    response = await client.post("/fhir/Appointment/$find", json=body, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    included = {
        e["fullUrl"].split("/fhir/")[1]
        for e in response.json()["entry"]
        if e["search"]["mode"] == "include"
    }
    assert included == {f"Slot/{slot_id}", ref(practice.practitioner)}


async def test_find_refuses_bad_windows(client: httpx.AsyncClient) -> None:
    for params in (
        {"end": WINDOW["end"]},
        {"start": "soon"},
        {"start": "2026-02-30"},
        {"start": WINDOW["end"], "end": WINDOW["start"]},
        {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=32)).isoformat()},
        {**WINDOW, "_count": "0"},
        {**WINDOW, "_include": "Appointment:patient"},
        {**WINDOW, "practitioner": "Location/1"},
    ):
        refusal(await client.get("/fhir/Appointment/$find", params=params), 400)
