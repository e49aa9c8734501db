"""A Schedule's planningHorizon read as FHIR means it, whatever its precision: a date is the
whole day, a dateTime its instant; slots beyond it are neither offered nor booked."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.api.scheduling_setup import (
    TOMORROW,
    add_slots,
    booking,
    find,
    open_practice,
    refusal,
    slots_of,
)
from tests.factories import FHIR_JSON, operate


@pytest.mark.parametrize(
    "end",
    [
        TOMORROW.date().isoformat(),  # a date: the whole of tomorrow
        (TOMORROW + timedelta(hours=10)).isoformat(),  # an instant later tomorrow
        TOMORROW.strftime("%Y-%m"),  # a month: the whole month, tomorrow's included
    ],
)
async def test_slots_beyond_a_horizon_are_not_offered_nor_booked(
    client: httpx.AsyncClient, end: str
) -> None:
    practice = await open_practice(client)
    schedule = {**practice.consultations, "planningHorizon": {"end": end}}
    url = f"/fhir/Schedule/{schedule['id']}"
    assert (await client.put(url, json=schedule, headers=FHIR_JSON)).status_code == 200
    (inside,) = await add_slots(client, schedule, 1)
    far = TOMORROW.replace(day=1) + timedelta(days=40)  # past tomorrow's month, too
    (beyond,) = await add_slots(client, schedule, 1, first=far)
    assert inside in slots_of(await find(client))
    around = {
        "start": (far - timedelta(days=1)).isoformat(),
        "end": (far + timedelta(days=1)).isoformat(),
    }
    assert beyond not in slots_of(await find(client, **around))
    refused = await operate(
        client, "Appointment/$book", ("appt-resource", booking(beyond, practice.patients[0]))
    )
    assert "planning horizon" in refusal(refused)
    booked = await operate(
        client, "Appointment/$book", ("appt-resource", booking(inside, practice.patients[0]))
    )
    assert booked.status_code == 201, booked.text


async def test_a_horizon_the_rules_cannot_read_is_refused(client: httpx.AsyncClient) -> None:
    """`2026-02-30` has the shape of a date but is none: refused (the datatype's validation),
    never read as "no limit"."""
    practice = await open_practice(client)
    schedule = {**practice.consultations, "planningHorizon": {"end": "2026-02-30"}}
    url = f"/fhir/Schedule/{schedule['id']}"
    answer = await client.put(url, json=schedule, headers=FHIR_JSON)
    refusal(answer, 422)
    assert "planningHorizon" not in (await client.get(url)).json()
