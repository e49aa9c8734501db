"""Slots generated from availability rules are bounded: a rule asking for too short slots, too
far a horizon, out-of-range numbers or too many slots is a 422 that changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.auth import clients
from server.auth.access import Access
from server.auth.caller import sandbox
from server.config import Settings
from server.fhir.outcome import FhirError
from server.limits import Limits
from server.scheduling import availability, generation
from server.scheduling.rules import SchedulingRules
from tests.api.scheduling_setup import refusal
from tests.conftest import BASE
from tests.factories import (
    FHIR_JSON,
    create,
    fresh_rpps,
    make_practitioner,
    make_schedule,
    operate,
    ref,
)

EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOMORROW = datetime.now(UTC).date() + timedelta(days=1)
SMALL_CAP = 50


def hours(start: str = "09:00:00", end: str = "10:00:00") -> dict[str, Any]:
    days = [{"url": "daysOfWeek", "valueCode": day} for day in EVERY_DAY]
    return {
        "url": "availableTime",
        "extension": [
            *days,
            {"url": "availableStartTime", "valueTime": start},
            {"url": "availableEndTime", "valueTime": end},
        ],
    }


UCUM = "http://unitsofmeasure.org"  # a Duration's code needs its system (qty-3, drt-1)


def duration(url: str, value: Any, code: str) -> dict[str, Any]:
    return {"url": url, "valueDuration": {"value": value, "system": UCUM, "code": code}}


def rule(
    minutes: Any = 5,
    *,
    start: str = "09:00:00",
    end: str = "10:00:00",
    horizon: Any = 7,
    horizon_code: str = "d",
    seats: Any = 1,
) -> dict[str, Any]:
    """Hours every day in UTC, `minutes`-long slots, `horizon` days ahead."""
    return {
        "url": availability.URL,
        "extension": [
            hours(start, end),
            duration("duration", minutes, "min"),
            duration("horizon", horizon, horizon_code),
            {"url": "seats", "valuePositiveInt": seats},
            {"url": "timezone", "valueCode": "UTC"},
        ],
    }


def within(days: int) -> dict[str, str]:
    """A planningHorizon of whole days from tomorrow: slot counts that do not depend on the hour
    the test runs."""
    last: date = TOMORROW + timedelta(days=days - 1)
    return {"start": TOMORROW.isoformat(), "end": last.isoformat()}


async def schedule_with(client: httpx.AsyncClient, *rules: dict[str, Any]) -> httpx.Response:
    practitioner = await create(client, make_practitioner(fresh_rpps()))
    body = make_schedule(ref(practitioner), planningHorizon=within(2), extension=list(rules))
    return await client.post("/fhir/Schedule", json=body, headers=FHIR_JSON)


async def bare_schedule(client: httpx.AsyncClient) -> dict[str, Any]:
    practitioner = await create(client, make_practitioner(fresh_rpps()))
    return await create(client, make_schedule(ref(practitioner), planningHorizon=within(2)))


async def put_rules(
    client: httpx.AsyncClient, schedule: dict[str, Any], *rules: dict[str, Any]
) -> httpx.Response:
    body = {**schedule, "extension": list(rules)}
    return await client.put(f"/fhir/Schedule/{schedule['id']}", json=body, headers=FHIR_JSON)


async def slots_of(client: httpx.AsyncClient, schedule_id: str) -> list[dict[str, Any]]:
    found = await client.get(
        "/fhir/Slot", params={"schedule": f"Schedule/{schedule_id}", "_count": "1000"}
    )
    assert found.status_code == 200, found.text
    return [entry["resource"] for entry in found.json().get("entry", [])]


async def slot_count(client: httpx.AsyncClient, schedule_id: str) -> int:
    params = {"schedule": f"Schedule/{schedule_id}", "_summary": "count"}
    total: int = (await client.get("/fhir/Slot", params=params)).json()["total"]
    return total


async def slot_total(client: httpx.AsyncClient) -> int:
    found = await client.get("/fhir/Slot", params={"_summary": "count"})
    total: int = found.json()["total"]
    return total


async def assert_unchanged(client: httpx.AsyncClient, schedule: dict[str, Any]) -> None:
    current = (await client.get(f"/fhir/Schedule/{schedule['id']}")).json()
    assert current["meta"]["versionId"] == schedule["meta"]["versionId"]
    assert await slot_total(client) == 0


@pytest.fixture
async def capped(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of an app on the same store whose generations may describe at most
    SMALL_CAP slots."""
    limited = dataclasses.replace(settings, limits=Limits(generated_slots=SMALL_CAP))
    app = create_app(limited)
    async with app.router.lifespan_context(app):
        admin, _ = await clients.create(app.state.store, name="capped-operator", admin=True)
        token = (await app.state.authority.issue(admin))["access_token"]
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=headers
        ) as http:
            yield http


# Slot length -------------------------------------------------------------------------------------


async def test_a_one_minute_rule_is_refused_and_creates_nothing(
    client: httpx.AsyncClient,
) -> None:
    response = await schedule_with(client, rule(1))
    message = refusal(response, 422)
    assert "min_slot_minutes" in message
    assert response.json()["issue"][0]["expression"] == ["Schedule.extension[0].extension[1]"]
    schedule = await bare_schedule(client)
    refusal(await put_rules(client, schedule, rule(1)), 422)
    await assert_unchanged(client, schedule)


async def test_a_five_minute_rule_generates_its_slots(client: httpx.AsyncClient) -> None:
    response = await schedule_with(client, rule(5))
    assert response.status_code == 201, response.text
    assert len(await slots_of(client, response.json()["id"])) == 12 * 2


# Numbers -----------------------------------------------------------------------------------------

HUGE = 10**30
WIDEST = 2**64 - 1  # the largest integer a JSON parser may keep as an integer
NUMBERS = [
    ("duration-1e308", rule(1e308)),
    ("duration-huge", rule(HUGE)),
    ("duration-widest", rule(WIDEST)),
    ("duration-negative", rule(-5)),
    ("duration-zero", rule(0)),
    ("duration-string", rule("5")),
    ("horizon-1e308", rule(horizon=1e308)),
    ("horizon-huge", rule(horizon=HUGE)),
    ("horizon-widest-weeks", rule(horizon=WIDEST, horizon_code="wk")),
    ("horizon-negative", rule(horizon=-7)),
    ("seats-1e308", rule(seats=1e308)),
    ("seats-huge", rule(seats=HUGE)),
    ("seats-widest", rule(seats=WIDEST)),
    ("seats-negative", rule(seats=-1)),
    ("start-hour-99", rule(start="99:00:00")),
    ("end-midnight-24", rule(end="24:00:00")),
    ("start-trailing-newline", rule(start="09:00:00\n")),
    ("start-fraction", rule(start="09:00:00.5")),
]


@pytest.mark.parametrize("extension", [c[1] for c in NUMBERS], ids=[c[0] for c in NUMBERS])
async def test_numbers_out_of_range_are_422_never_500(
    client: httpx.AsyncClient, extension: dict[str, Any]
) -> None:
    refusal(await schedule_with(client, extension), 422)
    assert await slot_total(client) == 0


# Horizon -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "code"), [(93, "d"), (14, "wk"), (366, "d")])
async def test_a_horizon_beyond_the_cap_is_refused(
    client: httpx.AsyncClient, value: int, code: str
) -> None:
    schedule = await bare_schedule(client)
    message = refusal(
        await put_rules(client, schedule, rule(horizon=value, horizon_code=code)), 422
    )
    assert "generation_horizon_days" in message
    await assert_unchanged(client, schedule)


async def test_a_horizon_at_the_cap_is_accepted(client: httpx.AsyncClient) -> None:
    response = await schedule_with(client, rule(horizon=92))
    assert response.status_code == 201, response.text


# Slots per generation ----------------------------------------------------------------------------


async def test_rules_describing_more_slots_than_the_cap_are_refused(
    capped: httpx.AsyncClient,
) -> None:
    schedule = await bare_schedule(capped)
    over = rule(end="11:10:00")  # 26 a day over 2 days: 52
    response = await put_rules(capped, schedule, over)
    message = refusal(response, 422)
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert f"{SMALL_CAP} slots (generated_slots)" in message
    await assert_unchanged(capped, schedule)
    split = (rule(end="10:00:00"), rule(start="10:00:00", end="11:10:00"))  # 24 + 28
    refusal(await put_rules(capped, schedule, *split), 422)
    await assert_unchanged(capped, schedule)


async def test_rules_at_the_cap_generate_exactly_what_they_describe(
    capped: httpx.AsyncClient,
) -> None:
    schedule = await bare_schedule(capped)
    response = await put_rules(capped, schedule, rule(end="11:05:00"))  # 25 a day over 2 days
    assert response.status_code == 200, response.text
    assert len(await slots_of(capped, schedule["id"])) == SMALL_CAP
    again = await operate(capped, f"Schedule/{schedule['id']}/$generate-slots")
    assert again.status_code == 200, again.text
    counts = {p["name"]: p["valueInteger"] for p in again.json()["parameter"]}
    assert counts == {"created": 0, "skipped": SMALL_CAP}


async def test_generate_slots_meets_the_same_cap(
    client: httpx.AsyncClient, capped: httpx.AsyncClient
) -> None:
    """A Schedule accepted under a higher cap is refused by `$generate-slots` under a lower one,
    and its slots are left as they are."""
    response = await schedule_with(client, rule(end="11:10:00"))
    assert response.status_code == 201, response.text
    schedule_id = response.json()["id"]
    assert len(await slots_of(client, schedule_id)) == 52
    refused = await operate(capped, f"Schedule/{schedule_id}/$generate-slots")
    refusal(refused, 422)
    assert refused.json()["issue"][0]["code"] == "too-costly"
    assert len(await slots_of(client, schedule_id)) == 52


# Overlapping rules -------------------------------------------------------------------------------


def starts_at(minute: int) -> dict[str, Any]:
    """09:0m to 10:0m, 5-minute slots: overlapping the 09:00 rule without equalling it."""
    return rule(start=f"09:0{minute}:00", end=f"10:0{minute}:00")


async def test_forty_overlapping_rules_give_each_slot_once(client: httpx.AsyncClient) -> None:
    """Rules that overlap each other are accepted; the slot that starts first wins and the ones
    it overlaps are dropped as the rules' slots stream by."""
    response = await schedule_with(client, *(starts_at(n % 5) for n in range(40)))
    assert response.status_code == 201, response.text
    schedule_id = response.json()["id"]
    made = await slots_of(client, schedule_id)
    assert len(made) == 12 * 2
    spans = sorted(
        (datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])) for s in made
    )
    assert all(earlier[1] <= later[0] for earlier, later in pairwise(spans))
    assert {start.minute % 5 for start, _ in spans} == {0}
    again = await operate(client, f"Schedule/{schedule_id}/$generate-slots")
    counts = {p["name"]: p["valueInteger"] for p in again.json()["parameter"]}
    assert counts == {"created": 0, "skipped": 12 * 2}


def test_planning_stops_as_soon_as_the_cap_is_passed() -> None:
    """Forty all-day rules of 5-minute slots over 92 days describe 1.06 million slots: the
    planning refuses at the first one past the cap, without building them all."""
    all_day = {
        "url": "availableTime",
        "extension": [
            *({"url": "daysOfWeek", "valueCode": day} for day in EVERY_DAY),
            {"url": "allDay", "valueBoolean": True},
        ],
    }
    one = {"url": availability.URL, "extension": [all_day, duration("duration", 5, "min")]}
    body = {"resourceType": "Schedule", "extension": [one] * 40}
    caps = availability.Caps.of(Limits(generated_slots=1000))
    rules = availability.parse_rules(body, caps)
    now = datetime.now(UTC)
    with pytest.raises(FhirError) as caught:
        availability.plan(
            body, rules, [], now, "Schedule/s", horizon_end=now + timedelta(days=92), caps=caps
        )
    assert caught.value.status == 422
    assert caught.value.issues[0].code == "too-costly"


# Large generations -------------------------------------------------------------------------------

ALL_DAY = rule(start="00:00:00", end="23:59:59")  # 287 a day: the last 5 minutes do not fit


async def test_a_large_generation_is_written_in_batches_each_slot_once(
    client: httpx.AsyncClient,
) -> None:
    """576 slots (5-minute, all day, 2 days): more than a batch, written after the Schedule's
    transaction and before the answer."""
    response = await schedule_with(client, ALL_DAY)
    assert response.status_code == 201, response.text
    schedule_id = response.json()["id"]
    assert generation.BATCH < 287 * 2
    assert await slot_count(client, schedule_id) == 287 * 2
    again = await operate(client, f"Schedule/{schedule_id}/$generate-slots")
    counts = {p["name"]: p["valueInteger"] for p in again.json()["parameter"]}
    assert counts == {"created": 0, "skipped": 287 * 2}
    assert await slot_count(client, schedule_id) == 287 * 2


async def test_slots_planned_from_a_replaced_version_are_not_written(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    schedule = await bare_schedule(client)
    planned = dict(schedule, extension=[ALL_DAY])
    replaced = await put_rules(client, schedule, rule(start="14:00:00", end="14:05:00"))
    assert replaced.status_code == 200, replaced.text
    assert await slot_count(client, schedule["id"]) == 2
    store = app.state.store
    old = await store.version("Schedule", schedule["id"], 1)
    later = generation.Later()
    now = datetime.now(UTC)
    rules = SchedulingRules(app.state.policy, Access(sandbox()), BASE, later=later)
    async with store.transaction() as tx:
        stale = dataclasses.replace(old, body=planned)
        await generation.generate(tx, stale, BASE, rules, now, now + timedelta(days=3))
    assert later.pending
    await later.write(store, BASE, rules, None)
    assert await slot_count(client, schedule["id"]) == 2
