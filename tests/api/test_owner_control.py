"""The owner's controls: selective cancellation with preview, slots from availability rules, and
the phantom-appointment scenario end to end."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.api.scheduling_setup import (
    TOMORROW,
    VACCINE,
    add_slots,
    booking,
    find,
    ledger,
    open_practice,
    refusal,
    slot_status,
    slots_of,
)
from tests.factories import (
    CONSULTATION,
    FHIR_JSON,
    appointment_in,
    create,
    make_delivery,
    operate,
    ref,
)

AVAILABILITY = "https://fhir.creneau.org/StructureDefinition/schedule-availability"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


async def book(client: httpx.AsyncClient, slot_id: str, patient: dict[str, Any]) -> dict[str, Any]:
    response = await operate(
        client, "Appointment/$book", ("appt-resource", booking(slot_id, patient))
    )
    assert response.status_code == 201, response.text
    return appointment_in(response)


async def test_selective_cancellation_previews_then_cancels_exactly_that(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    await create(client, make_delivery(practice.place, 10))
    next_week = TOMORROW + timedelta(days=7)
    soon = await add_slots(client, practice.vaccinations, 1)
    later = await add_slots(client, practice.vaccinations, 2, first=next_week)
    alice, bruno, chloe = practice.patients
    kept = await book(client, soon[0], alice)
    doomed = [await book(client, later[0], alice), await book(client, later[1], bruno)]
    window = [
        ("start", (next_week - timedelta(hours=1)).isoformat()),
        ("end", (next_week + timedelta(days=1)).isoformat()),
    ]
    path = f"Schedule/{practice.vaccinations['id']}/$cancel-appointments"
    refusal(await operate(client, path, *window), 400)  # a reason is required
    preview = await operate(client, path, *window, ("reason", "No vaccine"), ("dry-run", True))
    assert preview.status_code == 200, preview.text
    previewed = [e["resource"]["id"] for e in preview.json()["entry"]]
    assert previewed == [a["id"] for a in doomed]
    assert all(e["resource"]["status"] == "booked" for e in preview.json()["entry"])
    assert (await ledger(client, practice.place))[VACCINE]["reserved"] == 3  # nothing changed
    done = await operate(client, path, *window, ("reason", "No vaccine"))
    assert done.status_code == 200, done.text
    resources = [e["resource"] for e in done.json()["entry"]]
    cancelled = [r for r in resources if r["resourceType"] == "Appointment"]
    assert [r["id"] for r in cancelled] == previewed
    assert all(r["status"] == "cancelled" for r in cancelled)
    notes = [r for r in resources if r["resourceType"] == "Communication"]
    assert sorted(n["subject"]["reference"] for n in notes) == sorted([ref(alice), ref(bruno)])
    for note in notes:
        assert note["status"] == "preparation"
        assert note["payload"][0] == {"contentString": "No vaccine"}
    assert all([await slot_status(client, s) == "free" for s in later])
    assert (await client.get(f"/fhir/Appointment/{kept['id']}")).json()["status"] == "booked"
    assert (await ledger(client, practice.place))[VACCINE]["reserved"] == 1
    assert chloe  # had no appointment: no Communication
    stored = await client.get("/fhir/Communication", params={"status": "preparation"})
    assert stored.json()["total"] == 2


async def test_selective_cancellation_filters_by_service_app_and_date(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    schedule = practice.consultations
    first, second = await add_slots(client, schedule, 2)
    one = await book(client, first, practice.patients[0])
    path = f"Schedule/{schedule['id']}/$cancel-appointments"
    later_than_one = one["extension"][0]["extension"][0]["valueInstant"]
    two = await book(client, second, practice.patients[1])

    async def chosen(*pairs: tuple[str, Any]) -> list[str]:
        response = await operate(client, path, ("reason", "r"), ("dry-run", True), *pairs)
        assert response.status_code == 200, response.text
        return [e["resource"]["id"] for e in response.json().get("entry", [])]

    assert await chosen() == [one["id"], two["id"]]
    assert await chosen(("service-type", "57")) == []
    code = CONSULTATION["coding"][0]
    assert await chosen(("service-type", f"{code['system']}|{code['code']}")) == [
        one["id"],
        two["id"],
    ]
    assert await chosen(("booked-by", client.client_id)) == [one["id"], two["id"]]
    assert await chosen(("booked-by", "another-app")) == []
    assert await chosen(("created-after", later_than_one)) == [two["id"]]
    refusal(await operate(client, "Schedule/nope/$cancel-appointments", ("reason", "r")), 404)


def availability(days: list[str]) -> dict[str, Any]:
    return {
        "url": AVAILABILITY,
        "extension": [
            {
                "url": "availableTime",
                "extension": [
                    *({"url": "daysOfWeek", "valueCode": d} for d in days),
                    {"url": "availableStartTime", "valueTime": "09:00:00"},
                    {"url": "availableEndTime", "valueTime": "10:00:00"},
                ],
            },
            {
                "url": "duration",
                "valueDuration": {
                    "value": 20,
                    "unit": "min",
                    "system": "http://unitsofmeasure.org",
                    "code": "min",
                },
            },
            {
                "url": "horizon",
                "valueDuration": {
                    "value": 7,
                    "unit": "d",
                    "system": "http://unitsofmeasure.org",
                    "code": "d",
                },
            },
        ],
    }


async def test_availability_rules_make_slots_once_and_never_touch_booked_ones(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    schedule = {**practice.consultations, "extension": [availability(list(WEEKDAYS))]}
    url = f"/fhir/Schedule/{schedule['id']}"
    assert (await client.put(url, json=schedule, headers=FHIR_JSON)).status_code == 200
    slots = (await client.get("/fhir/Slot", params={"schedule": url[6:], "_count": "100"})).json()
    made = [e["resource"] for e in slots["entry"]]
    assert 18 <= len(made) <= 21  # 3 a day over 7 days, less what has already passed today
    taken = await book(client, made[0]["id"], practice.patients[0])
    again = await client.post(f"{url}/$generate-slots")
    assert again.status_code == 200, again.text
    counts = {p["name"]: p["valueInteger"] for p in again.json()["parameter"]}
    assert counts == {"created": 0, "skipped": len(made)}
    assert (await client.get(f"/fhir/Appointment/{taken['id']}")).json()["status"] == "booked"
    bad = {
        **schedule,
        "extension": [
            {
                "url": AVAILABILITY,
                "extension": [{"url": "duration", "valueDuration": {"value": -5, "code": "min"}}],
            }
        ],
    }
    refusal(await client.put(url, json=bad, headers=FHIR_JSON), 422)


async def test_phantom_appointments_cannot_happen(client: httpx.AsyncClient) -> None:
    """A GP registers for vaccination but receives no dose: nothing is offered or bookable. Ten
    doses arrive: exactly ten bookable. The GP switches vaccination off: nothing more, bookings
    kept. Then next week's vaccination bookings are cancelled, after a preview, and the
    consultations are left alone."""
    practice = await open_practice(client, patients=12)
    next_week = TOMORROW + timedelta(days=7)
    vaccination_slots = await add_slots(
        client, practice.vaccinations, 14, first=next_week, minutes=5
    )
    consultation_slots = await add_slots(
        client, practice.consultations, 2, first=next_week + timedelta(hours=3)
    )
    window = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=14)).isoformat()}
    vaccination = {**window, "service-type": "57"}
    assert slots_of(await find(client, **vaccination)) == []
    refusal(
        await operate(
            client,
            "Appointment/$book",
            ("appt-resource", booking(vaccination_slots[0], practice.patients[0])),
        )
    )

    await create(client, make_delivery(practice.place, 10))
    assert len(slots_of(await find(client, **vaccination))) == 10
    outcomes = [
        (
            await operate(client, "Appointment/$book", ("appt-resource", booking(slot, patient)))
        ).status_code
        for slot, patient in zip(vaccination_slots[:11], practice.patients[:11], strict=True)
    ]
    assert outcomes == [201] * 10 + [409]
    assert slots_of(await find(client, **vaccination)) == []
    consultations = [await book(client, s, practice.patients[11]) for s in consultation_slots]

    off = {**practice.vaccinations, "active": False}
    await client.put(f"/fhir/Schedule/{off['id']}", json=off, headers=FHIR_JSON)
    await create(client, make_delivery(practice.place, 5))
    assert slots_of(await find(client, **vaccination)) == []
    refusal(
        await operate(
            client,
            "Appointment/$book",
            ("appt-resource", booking(vaccination_slots[12], practice.patients[0])),
        )
    )
    booked = await client.get("/fhir/Appointment", params={"status": "booked", "_count": "50"})
    assert booked.json()["total"] == 12  # 10 vaccinations and 2 consultations kept

    path = f"Schedule/{practice.vaccinations['id']}/$cancel-appointments"
    week = [("start", next_week.isoformat()), ("end", (next_week + timedelta(days=7)).isoformat())]
    preview = await operate(
        client, path, *week, ("reason", "No vaccine received"), ("dry-run", True)
    )
    assert len(preview.json()["entry"]) == 10
    done = await operate(client, path, *week, ("reason", "No vaccine received"))
    kinds = [e["resource"]["resourceType"] for e in done.json()["entry"]]
    assert kinds.count("Appointment") == 10 and kinds.count("Communication") == 10
    for consultation in consultations:
        current = (await client.get(f"/fhir/Appointment/{consultation['id']}")).json()
        assert current["status"] == "booked"
    assert (await ledger(client, practice.place))[VACCINE]["reserved"] == 0
