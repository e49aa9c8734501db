"""The vaccine dose ledger: deliveries, administrations, reservations; vaccination bookings are
capped by the doses on hand."""

from __future__ import annotations

import httpx

from tests.api.scheduling_setup import VACCINE, add_slots, booking, ledger, open_practice, refusal
from tests.factories import (
    COMIRNATY,
    FHIR_JSON,
    appointment_in,
    create,
    make_delivery,
    make_vaccination_schedule,
    operate,
    ref,
)


async def test_the_ledger_follows_deliveries_bookings_cancellations_and_immunizations(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    slots = await add_slots(client, practice.vaccinations, 3)
    zero = {"delivered": 0, "administered": 0, "reserved": 0, "available": 0}
    assert await ledger(client, practice.place) == {VACCINE: zero}  # offered, none yet
    delivery = await create(client, make_delivery(practice.place, 2))
    assert (await ledger(client, practice.place))[VACCINE] == {
        "delivered": 2,
        "administered": 0,
        "reserved": 0,
        "available": 2,
    }
    first = appointment_in(
        await operate(
            client, "Appointment/$book", ("appt-resource", booking(slots[0], practice.patients[0]))
        )
    )
    assert (await ledger(client, practice.place))[VACCINE]["reserved"] == 1
    await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{slots[1]}"}))
    assert (await ledger(client, practice.place))[VACCINE] == {
        "delivered": 2,
        "administered": 0,
        "reserved": 2,
        "available": 0,
    }
    no_dose = await operate(
        client, "Appointment/$book", ("appt-resource", booking(slots[2], practice.patients[1]))
    )
    assert "No dose of vaccine" in refusal(no_dose)
    await operate(client, f"Appointment/{first['id']}/$cancel", ("reason", "changed mind"))
    assert (await ledger(client, practice.place))[VACCINE]["reserved"] == 1
    # a delivery corrected upwards, then a completed Immunization
    more = {**delivery, "suppliedItem": {**delivery["suppliedItem"], "quantity": {"value": 5}}}
    await client.put(f"/fhir/SupplyDelivery/{delivery['id']}", json=more, headers=FHIR_JSON)
    immunization = {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": {"coding": [COMIRNATY]},
        "patient": {"reference": ref(practice.patients[0])},
        "occurrenceDateTime": "2026-11-20T10:00:00+01:00",
        "location": {"reference": practice.place},
    }
    await create(client, immunization)
    assert (await ledger(client, practice.place))[VACCINE] == {
        "delivered": 5,
        "administered": 1,
        "reserved": 1,
        "available": 3,
    }


async def test_a_booked_vaccination_reserves_until_fulfilled_or_noshow(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    slots = await add_slots(client, practice.vaccinations, 2)
    await create(client, make_delivery(practice.place, 5))
    for slot_id, ending in zip(slots, ("fulfilled", "noshow"), strict=True):
        made = appointment_in(
            await operate(
                client,
                "Appointment/$book",
                ("appt-resource", booking(slot_id, practice.patients[0])),
            )
        )
        assert (await ledger(client, practice.place))[VACCINE]["reserved"] == 1
        done = await client.put(
            f"/fhir/Appointment/{made['id']}", json={**made, "status": ending}, headers=FHIR_JSON
        )
        assert done.status_code == 200, done.text
        assert (await ledger(client, practice.place))[VACCINE]["reserved"] == 0


async def test_a_vaccination_schedule_without_a_vaccine_books_nothing(
    client: httpx.AsyncClient,
) -> None:
    practice = await open_practice(client)
    schedule = {k: v for k, v in practice.vaccinations.items() if k != "extension"}
    await client.put(f"/fhir/Schedule/{schedule['id']}", json=schedule, headers=FHIR_JSON)
    await create(client, make_delivery(practice.place, 5))
    (slot_id,) = await add_slots(client, practice.vaccinations, 1)
    response = await operate(
        client, "Appointment/$book", ("appt-resource", booking(slot_id, practice.patients[0]))
    )
    assert "names no vaccine" in refusal(response)


async def test_the_ledger_lists_what_the_place_offers_before_any_delivery(
    client: httpx.AsyncClient,
) -> None:
    """The phantom-appointment situation at a glance: offered, nothing available. A Schedule
    with a Location counts at the Location, not at its practitioner."""
    practice = await open_practice(client)
    other = {"system": "http://hl7.org/fhir/sid/cvx", "code": "300"}
    alone = make_vaccination_schedule(ref(practice.practitioner), vaccine=other)
    await create(client, alone)
    zero = {"delivered": 0, "administered": 0, "reserved": 0, "available": 0}
    assert await ledger(client, practice.place) == {VACCINE: zero}
    assert await ledger(client, ref(practice.practitioner)) == {
        "http://hl7.org/fhir/sid/cvx|300": zero
    }
    only = await client.get(f"/fhir/{practice.place}/$doses", params={"vaccine": "300"})
    assert only.json().get("parameter") is None


async def test_doses_of_an_unknown_place_is_404(client: httpx.AsyncClient) -> None:
    refusal(await client.get("/fhir/Location/nowhere/$doses"), 404)
    refusal(await client.get("/fhir/Location/bad$id/$doses"), 400)
