"""The scheduling hot path (`server.store.composite`) answers exactly what the general search
answers: a schedule named as `Schedule/id` goes through the composite rows, the same schedule
named by its bare id through the general index tables, on both stores."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pymongo import MongoClient

from server.app import create_app
from server.config import Settings
from server.fhir.search import ANY_SYSTEM, Match, RangeValue, ReferenceValue, TokenValue
from server.fhir.values import date_range
from server.store import sqlite_search
from server.store.sqlite import SCHEMA
from tests.factories import create, make_practitioner, make_schedule, make_slot, ref

DAY = datetime(2030, 5, 6, tzinfo=UTC)
STARTS = [
    DAY - timedelta(milliseconds=1),
    DAY,
    DAY + timedelta(hours=8),
    DAY + timedelta(hours=8, milliseconds=500),
    DAY + timedelta(hours=8, seconds=1),
    DAY + timedelta(hours=23, minutes=59, seconds=59, milliseconds=999),
    DAY + timedelta(days=1),
]
STATUSES = ["free", "busy", "busy-tentative"]
VALUES = [
    "2030-05-06",
    "2030-05-06T08:00:00Z",
    "2030-05-06T08:00:00.500Z",
    "2030-05-06T10:00:01+02:00",
    "2030-05-07",
]
PREFIXES = ["eq", "ge", "gt", "lt", "le", "sa", "eb"]
STATUS_PARAMS: list[list[tuple[str, str]]] = [[], [("status", "free")], [("status", "free,busy")]]


async def _slots(client: httpx.AsyncClient) -> str:
    """Slots at each start with each status on one schedule, and others on another schedule."""
    schedules = []
    for name in ("Martin", "Petit"):
        practitioner = await create(client, make_practitioner(name))
        schedules.append(ref(await create(client, make_schedule(ref(practitioner)))))
    for (start, status), schedule in product(product(STARTS, STATUSES), schedules):
        await create(client, make_slot(schedule, start, status=status))
    return schedules[0]


async def _ids(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> set[str]:
    response = await client.get("/fhir/Slot", params=[*params, ("_count", "500")])
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


async def _same_answers(client: httpx.AsyncClient, schedule: str) -> int:
    """Every prefix, value and status filter, one date bound and two: the two paths agree."""
    bare = schedule.removeprefix("Schedule/")
    dates = [[("start", f"{p}{v}")] for p, v in product(PREFIXES, VALUES)]
    dates += [[("start", "ge2030-05-06"), ("start", "lt2030-05-07")]]
    dates += [[("start", "gt2030-05-06T08:00:00Z"), ("start", "le2030-05-06T08:00:01Z")]]
    nonempty = 0
    for date, status in product(dates, STATUS_PARAMS):
        composite = await _ids(client, [("schedule", schedule), *date, *status])
        general = await _ids(client, [("schedule", bare), *date, *status])
        assert composite == general, (date, status)
        nonempty += bool(general)
    return nonempty


async def test_the_composite_path_answers_as_the_general_one(client: httpx.AsyncClient) -> None:
    schedule = await _slots(client)
    assert await _same_answers(client, schedule) > 50  # the comparison compares something


async def test_a_status_change_moves_the_slot_between_ranges(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner("Robert"))
    schedule = ref(await create(client, make_schedule(ref(practitioner))))
    slot = await create(client, make_slot(schedule, DAY + timedelta(hours=9)))
    day = [("schedule", schedule), ("start", "ge2030-05-06"), ("start", "lt2030-05-07")]
    assert await _ids(client, [*day, ("status", "free")]) == {slot["id"]}
    slot["status"] = "busy-unavailable"
    response = await client.put(f"/fhir/Slot/{slot['id']}", json=slot)
    assert response.status_code == 200, response.text
    assert await _ids(client, [*day, ("status", "free")]) == set()
    assert await _ids(client, [*day, ("status", "busy-unavailable")]) == {slot["id"]}
    assert await _ids(client, day) == {slot["id"]}


def _plan(path: Path, sql: str, args: list[object]) -> str:
    with sqlite3.connect(path) as db:
        rows = db.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
    return "\n".join(row[3] for row in rows)


def test_a_day_of_free_slots_is_one_index_range(tmp_path: Path) -> None:
    """The statement the embedded store runs seeks the composite index on reference, state and
    instant: its work follows the answer, not the size of the store or of the schedule."""
    low, high = date_range("2030-05-06")  # type: ignore[misc]
    next_day = date_range("2030-05-07")
    assert next_day is not None
    matches = [
        Match("schedule", "reference", None, (ReferenceValue("Schedule", "s1", "Schedule/s1"),)),
        Match("status", "token", None, (TokenValue(ANY_SYSTEM, "free"),)),
        Match("start", "date", None, (RangeValue("ge", low, high),)),
        Match("start", "date", None, (RangeValue("lt", *next_day),)),
    ]
    where, args = sqlite_search.where("Slot", matches)
    path = tmp_path / "plan.db"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
    plan = _plan(path, f"SELECT r.body FROM resources r WHERE {where}", args)
    assert (
        "idx_composite_drive (rtype=? AND name=? AND literal=? AND state=? AND low>? AND low<?)"
        in plan
    ), plan
    assert "idx_token" not in plan and "idx_date" not in plan, plan


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    return Settings(base_url="http://test", data_dir=tmp_path / "store", sandbox=True)  # type: ignore[call-arg]


async def _open(settings: Settings) -> tuple[FastAPI, httpx.AsyncClient]:
    app = create_app(settings)
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_store_of_the_previous_schema_is_migrated(sqlite_settings: Settings) -> None:
    """A store written before the composite rows had a state: opened, its rows are rebuilt and
    searches through them find what they found."""
    app, client = await _open(sqlite_settings)
    async with app.router.lifespan_context(app), client:
        schedule = await _slots(client)
        expected = await _ids(client, [("schedule", schedule.removeprefix("Schedule/"))])
    path = sqlite_settings.sqlite_path
    with sqlite3.connect(path) as db:
        db.executescript(
            "DROP TABLE idx_composite; CREATE TABLE idx_composite (rid INTEGER NOT NULL, "
            "rtype TEXT NOT NULL, name TEXT NOT NULL, literal TEXT NOT NULL, low TEXT NOT NULL, "
            "high TEXT NOT NULL); CREATE INDEX idx_composite_drive ON idx_composite "
            "(rtype, name, literal, high, low, rid); PRAGMA user_version = 0;"
        )
    app, client = await _open(sqlite_settings)
    async with app.router.lifespan_context(app), client:
        day = [("start", "ge2030-05-06"), ("start", "lt2030-05-07")]
        assert await _ids(client, [("schedule", schedule), ("start", "ge2000-01-01")]) == expected
        assert await _ids(client, [("schedule", schedule), *day, ("status", "free")])
        assert await _same_answers(client, schedule) > 50
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] >= 1


def test_only_a_short_window_runs_as_a_bounded_statement() -> None:
    """A schedule's day (or week) of slots is read on the event loop; an open-ended window,
    which may hold a schedule's whole future, goes to a thread."""
    day, next_day = date_range("2030-05-06"), date_range("2030-05-07")
    far = date_range("2030-06-06")
    assert day is not None and next_day is not None and far is not None
    schedule = Match(
        "schedule", "reference", None, (ReferenceValue("Schedule", "s1", "Schedule/s1"),)
    )
    since = Match("start", "date", None, (RangeValue("ge", *day),))
    assert sqlite_search.timeline_only(
        "Slot", [schedule, since, Match("start", "date", None, (RangeValue("lt", *next_day),))]
    )
    visible = Match("_security", "token", None, (TokenValue("https://x.example", "owner"),))
    day = Match("start", "date", None, (RangeValue("lt", *next_day),))
    assert sqlite_search.timeline_only("Slot", [visible, schedule, since, day])  # auth on
    assert not sqlite_search.timeline_only("Slot", [schedule, since])
    assert not sqlite_search.timeline_only(
        "Slot", [schedule, since, Match("start", "date", None, (RangeValue("lt", *far),))]
    )


async def test_a_mongodb_database_of_the_previous_shape_is_migrated(mongodb_uri: str) -> None:
    """Composite elements written before they had a state (`st`) are recomputed once, when
    the database is opened, and searches through them find what they found."""
    database = f"t{uuid.uuid4().hex[:12]}"
    settings = Settings(  # type: ignore[call-arg]
        base_url="http://test",
        mongodb_uri=mongodb_uri.replace("/?", f"/{database}?"),
        sandbox=True,
        hold_sweep_seconds=0.0,
    )
    app, client = await _open(settings)
    async with app.router.lifespan_context(app), client:
        schedule = await _slots(client)
        expected = await _ids(client, [("schedule", schedule.removeprefix("Schedule/"))])
    with MongoClient(mongodb_uri) as mongo:
        resources = mongo[database].resources
        for document in resources.find({"type": "Slot"}, {"cmp": 1}):
            old = [{k: v for k, v in e.items() if k != "st"} for e in document["cmp"]]
            resources.update_one({"_id": document["_id"]}, {"$set": {"cmp": old}})
        mongo[database].records.delete_one({"_id": "schema-step/composite-states"})
    app, client = await _open(settings)
    async with app.router.lifespan_context(app), client:
        found = await _ids(client, [("schedule", schedule), ("start", "ge2000-01-01")])
        assert found == expected
        assert await _same_answers(client, schedule) > 50
