"""Search caps (docs/limits.md, "Search"): beyond each a 400 `too-costly`, never a 500 nor a
frozen worker; and many values inside the server's own searches (chains, `_revinclude`, `$find`)
answered in full, whatever SQLite's limits on one statement.

The volume tests use 1,100 resources on SQLite (past its 1,000-deep expressions) and 100 on
MongoDB, whose test server (nx-27017) evaluates long ORs slowly.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.auth.access import Access
from server.auth.caller import sandbox
from server.config import Settings
from server.fhir.search import ANY_SYSTEM, Match, TokenValue
from server.limits import Limits
from server.scheduling.rules import SchedulingRules
from server.store import writes
from server.store.base import Query
from tests.api.scheduling_setup import TOMORROW, add_slots, find, slots_of
from tests.conftest import TimeTravel
from tests.factories import CONSULTATION, FHIR_JSON, create, make_schedule

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TIGHT = replace(Limits(), page_size=2, included=3, chain_matches=3)


@pytest.fixture
async def tight(settings: Settings, time_travel: TimeTravel) -> AsyncIterator[httpx.AsyncClient]:
    """A sandboxed app with small caps (`TIGHT`), so that a few resources reach them."""
    app = create_app(replace(settings, sandbox=True, limits=TIGHT), clock=time_travel.now)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def volume(settings: Settings) -> int:
    return 100 if settings.mongodb_uri else 1100


async def get(client: httpx.AsyncClient, url: str, params: Any = None) -> dict[str, Any]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def too_costly(response: httpx.Response, code: str = "too-costly") -> str:
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == code, issue
    return str(issue["diagnostics"])


def matched(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def next_link(bundle: dict[str, Any]) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)


async def transaction(client: httpx.AsyncClient, resources: list[dict[str, Any]]) -> list[str]:
    """Created in one transaction; their ids. A resource's `fullUrl` key becomes its entry's."""
    entries = [
        {
            "fullUrl": resource.pop("fullUrl", f"urn:uuid:{uuid.uuid4()}"),
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }
        for resource in resources
    ]
    response = await client.post(
        "/fhir",
        json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
        headers=FHIR_JSON,
    )
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    return [location.split("/_history/")[0].rpartition("/")[2] for location in locations]


async def create_all(app: FastAPI, resources: list[dict[str, Any]]) -> list[str]:
    """Many resources in one transaction and one trip to the store (over HTTP, a thousand
    writes take seconds, and much longer on nx-27017); their ids."""
    base = app.state.settings.fhir_base
    rules = SchedulingRules(app.state.policy, Access(sandbox()), base)
    async with app.state.store.transaction() as tx:
        created = await writes.create_many(tx, resources, own_base=base, rules=rules)
    return [version.id for version in created]


def role(practitioner: str, organization: str) -> dict[str, Any]:
    return {
        "resourceType": "PractitionerRole",
        "practitioner": {"reference": practitioner},
        "organization": {"reference": f"Organization/{organization}"},
    }


async def practitioners_with_roles(
    client: httpx.AsyncClient, count: int, organization: str
) -> list[str]:
    """`count` practitioners in postal code 13001, each with a role in `organization`; the
    practitioners' ids."""
    pairs = []
    for _ in range(count):
        full_url = f"urn:uuid:{uuid.uuid4()}"
        practitioner = {"resourceType": "Practitioner", "address": [{"postalCode": "13001"}]}
        pairs += [{**practitioner, "fullUrl": full_url}, role(full_url, organization)]
    return (await transaction(client, pairs))[::2]


# _count


async def test_count_beyond_the_page_size_is_clamped_and_a_non_number_refused(
    tight: httpx.AsyncClient,
) -> None:
    await transaction(tight, [{"resourceType": "Patient"} for _ in range(3)])
    huge = "9" * 4301  # past Python's limit on converting digits to an int
    page = await get(tight, "/fhir/Patient", {"_count": huge})
    assert len(matched(page)) == 2 and next_link(page)
    assert len(matched(await get(tight, "/fhir/Patient", {"_count": "0" * 5000 + "1"}))) == 1
    assert len((await get(tight, "/fhir/_history", {"_count": huge}))["entry"]) == 2
    for value in ("abc", "-1", "1.5", "\u0661"):
        await too_costly(await tight.get("/fhir/Patient", params={"_count": value}), "invalid")


# chains and _has


async def test_chain_and_has_deeper_than_the_cap_are_too_costly(
    client: httpx.AsyncClient,
) -> None:
    four = "slot.schedule.actor:PractitionerRole.organization.name"
    assert matched(await get(client, "/fhir/Appointment", {four: "x"})) == []
    five = "slot.schedule.actor:PractitionerRole.organization.partof.name"
    assert "chain_depth" in await too_costly(await client.get(f"/fhir/Appointment?{five}=x"))
    deep = "organization" + ".partof" * 700 + ".name"
    await too_costly(await client.get(f"/fhir/PractitionerRole?{deep}=x"))
    nested = "_has:PractitionerRole:organization:" * 700 + "name"
    await too_costly(await client.get(f"/fhir/Organization?{nested}=x"))


async def test_chain_and_has_matching_more_than_the_cap_are_too_costly(
    tight: httpx.AsyncClient,
) -> None:
    organization = (await transaction(tight, [{"resourceType": "Organization", "name": "O"}]))[0]
    await practitioners_with_roles(tight, 3, organization)
    chain = {"practitioner.address-postalcode": "13"}
    assert len(matched(await get(tight, "/fhir/PractitionerRole", chain))) == 2  # page_size
    await practitioners_with_roles(tight, 1, organization)
    assert "chain_matches" in await too_costly(
        await tight.get("/fhir/PractitionerRole", params=chain)
    )
    has = {"_has:PractitionerRole:organization:practitioner.address-postalcode": "13"}
    await too_costly(await tight.get("/fhir/Organization", params=has))


async def test_chains_revincludes_and_find_over_many_resources_are_answered_in_full(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    count = volume(settings)
    organization = await create(client, {"resourceType": "Organization", "name": "Grande"})
    practitioner = {"resourceType": "Practitioner", "address": [{"postalCode": "13001"}]}
    practitioners = await create_all(app, [dict(practitioner) for _ in range(count)])
    chosen = [practitioners[0], practitioners[count // 2], practitioners[-1]]
    roles = await transaction(
        client, [role(f"Practitioner/{p}", organization["id"]) for p in chosen]
    )
    # a _has over a chain: every practitioner, then their roles, then the organization
    has = {"_has:PractitionerRole:organization:practitioner.address-postalcode": "13"}
    assert matched(await get(client, "/fhir/Organization", has)) == [organization["id"]]
    page = {"address-postalcode": "13", "_count": "1000"}
    page["_revinclude"] = "PractitionerRole:practitioner"
    first = await get(client, "/fhir/Practitioner", page)
    found, included = matched(first), matched(first, "include")
    if (following := next_link(first)) is not None:
        second = await get(client, following)
        found, included = found + matched(second), included + matched(second, "include")
    assert sorted(found) == sorted(practitioners) and sorted(included) == sorted(roles)
    # $find: the Schedules whose actor is any practitioner of the postal code
    schedule = await create(
        client, make_schedule(f"Practitioner/{chosen[1]}", serviceType=[CONSULTATION])
    )
    slot = await add_slots(client, schedule, 1, first=TOMORROW)
    assert slots_of(await find(client, **{"address-postalcode": "13"})) == slot


# OR values


async def test_or_values_are_capped_and_the_store_takes_any_number(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    patients = await transaction(client, [{"resourceType": "Patient"} for _ in range(60)])
    hundred = patients + [f"missing-{n}" for n in range(40)]
    answer = await get(client, "/fhir/Patient", {"_id": ",".join(hundred), "_count": "100"})
    assert sorted(matched(answer)) == sorted(patients)
    await too_costly(await client.get("/fhir/Patient", params={"_id": ",".join([*hundred, "x"])}))
    thousand = ",".join(f"p{n}" for n in range(1000))
    assert "or_values" in await too_costly(await client.get("/fhir/Patient?_id=" + thousand))
    # The server's own searches have no such cap: one statement for any number of values.
    many = patients + [f"missing-{n}" for n in range(volume(settings) * 2)]
    values = tuple(TokenValue(ANY_SYSTEM, i) for i in many)
    store = app.state.store
    found = await store.find(Query("Patient", [Match("_id", "token", None, values)], count=100))
    assert sorted(v.id for v in found.versions) == sorted(patients)
    current = await store.current_many([("Patient", i) for i in many])
    assert sorted(v.id for v in current) == sorted(patients)


# _sort


async def test_sort_keys_beyond_the_cap_are_too_costly(client: httpx.AsyncClient) -> None:
    await get(client, "/fhir/Patient", {"_sort": "birthdate,-name,gender,-birthdate,name"})
    for keys in (6, 2500):
        sort = ",".join(["birthdate"] * keys)
        assert "sort_keys" in await too_costly(await client.get(f"/fhir/Patient?_sort={sort}"))


# dates at the ends of the calendar


async def test_dates_at_the_ends_of_the_calendar_are_clamped(client: httpx.AsyncClient) -> None:
    first = await create(client, {"resourceType": "Patient", "birthDate": "0001-01-01"})
    last = await create(client, {"resourceType": "Patient", "birthDate": "9999-12-31"})
    both = sorted([first["id"], last["id"]])
    for value, expected in (
        ("ge0001-01-01T00:00:00+14:00", both),
        ("le9999-12-31T23:59:59-14:00", both),
        ("9999-12-31", [last["id"]]),
        ("9999-12", [last["id"]]),
        ("9999", [last["id"]]),
        ("lt0001-01-01T00:00:00+14:00", []),
        ("gt9999-12-31T23:59:59-14:00", []),
        ("eb9999-12-31T23:59:59.999999999-14:00", [first["id"]]),
    ):
        found = await get(client, "/fhir/Patient", {"birthdate": value})
        assert sorted(matched(found)) == expected, value
    for value in ("0000-01-01", "2024-01-01T00:00:00+99:99", "2024-01-01T00:00:00+14:30"):
        await too_costly(await client.get("/fhir/Slot", params={"start": value}), "invalid")


# _include, _revinclude and the number of parameters


async def test_include_and_parameter_counts_beyond_the_caps_are_too_costly(
    client: httpx.AsyncClient,
) -> None:
    flood = "&".join(["_include=Slot:schedule"] * 60_000)
    response = await client.post("/fhir/Slot/_search", content=flood, headers=FORM)
    assert "search_params" in await too_costly(response)
    eleven = "&".join(["_include=Slot:schedule"] * 6 + ["_revinclude=Appointment:slot"] * 5)
    assert "include_params" in await too_costly(await client.get(f"/fhir/Slot?{eleven}"))
    ten = "&".join(["_include=Slot:schedule"] * 5 + ["_revinclude=Appointment:slot"] * 5)
    assert matched(await get(client, f"/fhir/Slot?{ten}")) == []
    fifty_one = "&".join(["gender=female"] * 51)
    assert "search_params" in await too_costly(await client.get(f"/fhir/Patient?{fifty_one}"))


async def test_more_included_resources_than_the_cap_is_too_costly(
    tight: httpx.AsyncClient,
) -> None:
    organization = (await transaction(tight, [{"resourceType": "Organization", "name": "O"}]))[0]
    await practitioners_with_roles(tight, 4, organization)
    two = await get(tight, "/fhir/PractitionerRole", {"_include": "PractitionerRole:practitioner"})
    assert len(matched(two, "include")) == 2
    four = {"_revinclude": "PractitionerRole:organization"}
    assert "included" in await too_costly(await tight.get("/fhir/Organization", params=four))


# other values


ODD_QUERIES = [
    ("_elements=" + ",".join(f"e{n}" for n in range(5000)), 200),
    ("name=" + "x" * 1025, 400),
    ("identifier=" + "a|" * 600, 400),
    ("_profile:above=" + "h" * 5000, 400),  # on MongoDB, one condition per prefix
    ("name=%00", 200),
    ("name:contains=%00%C3%A9%F4%8F%BF%BF", 200),
    ("identifier=%00|%00", 200),
    ("name=%ff%fe", 200),
    ("_summary=" + "x" * 5000, 400),
    ("&".join(f"{p}:missing=true" for p in ("name", "birthdate", "gender", "identifier")), 200),
    ("birthdate=ge" + "2" * 1000, 400),
    ("_cursor=" + "x" * 5000, 400),
]


async def test_odd_values_are_answered_not_500(client: httpx.AsyncClient) -> None:
    answered = [
        (query[:40], (await client.get(f"/fhir/Patient?{query}")).status_code)
        for query, _ in ODD_QUERIES
    ]
    assert answered == [(query[:40], status) for query, status in ODD_QUERIES]
