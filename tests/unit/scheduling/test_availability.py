"""Availability rules on a Schedule, expanded into Slots: pure, no store, a fixed `now`."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot
from fhir.resources.R4B.structuredefinition import StructureDefinition

from server.fhir.outcome import FhirError
from server.scheduling.availability import (
    HOURS_PARTS,
    RULE_PARTS,
    SLOT_CAPACITY,
    URL,
    parse_rules,
    plan_slots,
)

ROOT = Path(__file__).resolve().parents[3]
PARIS = ZoneInfo("Europe/Paris")
UCUM = "http://unitsofmeasure.org"
REF = "Schedule/s1"
EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONDAY = datetime(2026, 1, 5, tzinfo=UTC)  # midnight UTC, 01:00 in Paris
GP = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "124"}]}
VACCINE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "57"}]
}


# Building rules ----------------------------------------------------------------------------------


def hours(
    *days: str, start: str | None = "09:00:00", end: str | None = "10:00:00"
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "daysOfWeek", "valueCode": day} for day in days]
    if start is not None:
        parts.append({"url": "availableStartTime", "valueTime": start})
    if end is not None:
        parts.append({"url": "availableEndTime", "valueTime": end})
    return {"url": "availableTime", "extension": parts}


def all_day(*days: str) -> dict[str, Any]:
    parts = [{"url": "daysOfWeek", "valueCode": day} for day in days]
    return {"url": "availableTime", "extension": [*parts, {"url": "allDay", "valueBoolean": True}]}


def duration(value: float, code: str = "min") -> dict[str, Any]:
    return {"url": "duration", "valueDuration": {"value": value, "system": UCUM, "code": code}}


def horizon(value: int, code: str = "d") -> dict[str, Any]:
    return {"url": "horizon", "valueDuration": {"value": value, "system": UCUM, "code": code}}


def seats(value: int) -> dict[str, Any]:
    return {"url": "seats", "valuePositiveInt": value}


def zone(code: str) -> dict[str, Any]:
    return {"url": "timezone", "valueCode": code}


def service(concept: dict[str, Any]) -> dict[str, Any]:
    return {"url": "serviceType", "valueCodeableConcept": concept}


def rule(*parts: dict[str, Any]) -> dict[str, Any]:
    """A rule extension; a 30-minute duration is added unless one is given."""
    if not any(part["url"] == "duration" for part in parts):
        parts = (*parts, duration(30))
    return {"url": URL, "extension": list(parts)}


def schedule(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Schedule",
        "active": True,
        "actor": [{"reference": "Practitioner/p1"}],
        "extension": list(rules),
        **extra,
    }


def plan(
    body: dict[str, Any],
    now: datetime = MONDAY,
    existing: tuple[dict[str, Any], ...] = (),
    **options: Any,
) -> list[dict[str, Any]]:
    return plan_slots(body, parse_rules(body), list(existing), now, REF, **options)


def starts(slots: list[dict[str, Any]]) -> list[str]:
    return [slot["start"] for slot in slots]


def utc_starts(slots: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat(slot["start"]).astimezone(UTC) for slot in slots]


def existing_slot(start: str, end: str, status: str = "busy") -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "schedule": {"reference": REF},
        "status": status,
        "start": start,
        "end": end,
    }


# Expansion ---------------------------------------------------------------------------------------


def test_a_schedule_without_rule_has_none() -> None:
    assert parse_rules({"resourceType": "Schedule"}) == []
    other = {"url": "http://example.org/other", "valueString": "x"}
    assert parse_rules(schedule(other)) == []
    assert plan(schedule(other)) == []


def test_days_of_week_and_hours_expand_into_slots() -> None:
    slots = plan(schedule(rule(hours("mon", "wed"), horizon(7))))
    assert starts(slots) == [
        "2026-01-05T09:00:00.000+01:00",
        "2026-01-05T09:30:00.000+01:00",
        "2026-01-07T09:00:00.000+01:00",
        "2026-01-07T09:30:00.000+01:00",
    ]
    assert slots[0] == {
        "resourceType": "Slot",
        "schedule": {"reference": REF},
        "status": "free",
        "start": "2026-01-05T09:00:00.000+01:00",
        "end": "2026-01-05T09:30:00.000+01:00",
    }


def test_several_ranges_in_one_day() -> None:
    body = schedule(
        rule(
            hours("mon", start="14:00:00", end="15:00:00"),
            hours("mon"),
            duration(1, "h"),
            horizon(1),
        )
    )
    slots = plan(body)
    assert starts(slots) == ["2026-01-05T09:00:00.000+01:00", "2026-01-05T14:00:00.000+01:00"]
    assert [slot["end"] for slot in slots] == [
        "2026-01-05T10:00:00.000+01:00",
        "2026-01-05T15:00:00.000+01:00",
    ]


def test_a_slot_that_would_overrun_the_range_is_dropped() -> None:
    slots = plan(schedule(rule(hours("mon"), duration(25), horizon(1))))
    assert starts(slots) == ["2026-01-05T09:00:00.000+01:00", "2026-01-05T09:25:00.000+01:00"]
    assert slots[-1]["end"] == "2026-01-05T09:50:00.000+01:00"


def test_hours_stay_local_when_clocks_go_forward() -> None:
    body = schedule(rule(hours(*EVERY_DAY, end="09:30:00"), horizon(4)))
    slots = plan(body, now=datetime(2026, 3, 27, tzinfo=UTC))
    assert starts(slots) == [
        "2026-03-27T09:00:00.000+01:00",
        "2026-03-28T09:00:00.000+01:00",
        "2026-03-29T09:00:00.000+02:00",
        "2026-03-30T09:00:00.000+02:00",
    ]
    assert [moment.hour for moment in utc_starts(slots)] == [8, 8, 7, 7]


def test_hours_stay_local_when_clocks_go_back() -> None:
    body = schedule(rule(hours(*EVERY_DAY, end="09:30:00"), horizon(4)))
    slots = plan(body, now=datetime(2026, 10, 23, tzinfo=UTC))
    assert starts(slots) == [
        "2026-10-23T09:00:00.000+02:00",
        "2026-10-24T09:00:00.000+02:00",
        "2026-10-25T09:00:00.000+01:00",
        "2026-10-26T09:00:00.000+01:00",
    ]
    assert [moment.hour for moment in utc_starts(slots)] == [7, 7, 8, 8]


def test_a_whole_day_has_23_hours_in_march_and_25_in_october() -> None:
    body = schedule(rule(all_day("sun"), duration(1, "h"), horizon(2)))
    march = plan(body, now=datetime(2026, 3, 28, tzinfo=UTC))
    october = plan(body, now=datetime(2026, 10, 24, tzinfo=UTC))
    assert len(march) == 23 and len(october) == 25
    assert march[0]["start"] == "2026-03-29T00:00:00.000+01:00"
    assert march[2]["start"] == "2026-03-29T03:00:00.000+02:00"  # 02:00 does not exist that night
    assert march[-1]["end"] == "2026-03-30T00:00:00.000+02:00"
    assert [october[2]["start"], october[3]["start"]] == [
        "2026-10-25T02:00:00.000+02:00",
        "2026-10-25T02:00:00.000+01:00",
    ]
    for slot in march + october:
        length = datetime.fromisoformat(slot["end"]) - datetime.fromisoformat(slot["start"])
        assert length == timedelta(hours=1)


def test_another_time_zone() -> None:
    body = schedule(rule(hours("mon"), zone("America/Martinique"), horizon(1)))
    slots = plan(body, now=datetime(2026, 1, 5, 12, tzinfo=UTC))
    assert starts(slots) == ["2026-01-05T09:00:00.000-04:00", "2026-01-05T09:30:00.000-04:00"]


# Existing slots ----------------------------------------------------------------------------------


def test_an_existing_slot_is_not_duplicated_whatever_its_offset() -> None:
    body = schedule(rule(hours("mon"), horizon(1)))
    taken = existing_slot("2026-01-05T08:00:00Z", "2026-01-05T08:30:00.000Z")
    assert starts(plan(body, existing=(taken,))) == ["2026-01-05T09:30:00.000+01:00"]


def test_a_slot_overlapping_an_existing_one_is_skipped() -> None:
    body = schedule(rule(hours("mon", end="11:00:00"), horizon(1)))
    booked = existing_slot("2026-01-05T08:15:00.000+00:00", "2026-01-05T09:45:00.000+01:00", "busy")
    assert starts(plan(body, existing=(booked,))) == [
        "2026-01-05T10:00:00.000+01:00",
        "2026-01-05T10:30:00.000+01:00",
    ]


def test_existing_slots_of_any_status_block_and_adjacent_ones_do_not() -> None:
    body = schedule(rule(hours("mon", end="11:00:00"), horizon(1)))
    before = existing_slot("2026-01-05T08:00:00.000+01:00", "2026-01-05T09:00:00.000+01:00", "free")
    cancelled = existing_slot(
        "2026-01-05T10:00:00.000+01:00", "2026-01-05T10:30:00.000+01:00", "entered-in-error"
    )
    assert starts(plan(body, existing=(before, cancelled))) == [
        "2026-01-05T09:00:00.000+01:00",
        "2026-01-05T09:30:00.000+01:00",
        "2026-01-05T10:30:00.000+01:00",
    ]


def test_planning_again_creates_nothing() -> None:
    body = schedule(rule(hours(*EVERY_DAY), horizon(14)))
    first = plan(body)
    assert len(first) == 28
    assert plan(body, existing=tuple(first)) == []


def test_overlapping_rules_never_give_overlapping_slots() -> None:
    later = rule(hours("mon", start="09:15:00", end="10:15:00"), duration(60), horizon(1))
    body = schedule(later, rule(hours("mon"), horizon(1)))
    assert starts(plan(body)) == ["2026-01-05T09:00:00.000+01:00", "2026-01-05T09:30:00.000+01:00"]


def test_slots_of_several_rules_are_ordered_by_start() -> None:
    afternoon = rule(hours("mon", "tue", start="14:00:00", end="14:30:00"), horizon(2))
    morning = rule(hours("mon", "tue", end="09:30:00"), horizon(2))
    assert starts(plan(schedule(afternoon, morning))) == [
        "2026-01-05T09:00:00.000+01:00",
        "2026-01-05T14:00:00.000+01:00",
        "2026-01-06T09:00:00.000+01:00",
        "2026-01-06T14:00:00.000+01:00",
    ]


# Contents of the slots ---------------------------------------------------------------------------


def test_seats_above_one_give_the_capacity_extension() -> None:
    three = plan(schedule(rule(hours("mon"), seats(3), horizon(1))))
    one = plan(schedule(rule(hours("mon"), seats(1), horizon(1))))
    assert three[0]["extension"] == [{"url": SLOT_CAPACITY, "valueInteger": 3}]
    assert "extension" not in one[0]


def test_service_type_from_the_rule_else_from_the_schedule() -> None:
    own = plan(schedule(rule(hours("mon"), service(VACCINE), horizon(1)), serviceType=[GP]))
    inherited = plan(schedule(rule(hours("mon"), horizon(1)), serviceType=[GP]))
    none = plan(schedule(rule(hours("mon"), horizon(1))))
    assert own[0]["serviceType"] == [VACCINE]
    assert inherited[0]["serviceType"] == [GP]
    assert "serviceType" not in none[0]
    own[0]["serviceType"][0]["text"] = "changed"
    assert "text" not in own[1]["serviceType"][0] and "text" not in VACCINE


def test_generated_slots_are_valid_r4b_slots() -> None:
    body = schedule(rule(hours("mon"), seats(2), service(VACCINE), horizon(1)))
    for slot in plan(body):
        assert Slot.model_validate(slot).status == "free"


# The window --------------------------------------------------------------------------------------


def test_only_slots_starting_after_now() -> None:
    body = schedule(rule(hours("mon", end="10:30:00"), horizon(1)))
    at_nine = datetime(2026, 1, 5, 8, tzinfo=UTC)  # 09:00 in Paris
    assert starts(plan(body, now=at_nine)) == [
        "2026-01-05T09:30:00.000+01:00",
        "2026-01-05T10:00:00.000+01:00",
    ]


def test_the_horizon_bounds_the_slots() -> None:
    daily = rule(hours(*EVERY_DAY, end="09:30:00"))
    after_morning = datetime(2026, 1, 5, 12, tzinfo=UTC)
    three_days = plan(schedule(rule(hours(*EVERY_DAY, end="09:30:00"), horizon(3))), after_morning)
    assert starts(three_days) == [
        "2026-01-06T09:00:00.000+01:00",
        "2026-01-07T09:00:00.000+01:00",
        "2026-01-08T09:00:00.000+01:00",
    ]
    default = plan(schedule(daily))
    assert len(default) == 28 and default[-1]["start"] == "2026-02-01T09:00:00.000+01:00"
    weeks = plan(schedule(rule(hours(*EVERY_DAY, end="09:30:00"), horizon(2, "wk"))))
    assert len(weeks) == 14


def test_horizon_end_replaces_the_horizon_up_to_366_days() -> None:
    body = schedule(rule(hours(*EVERY_DAY, end="09:30:00"), horizon(28)))
    assert len(plan(body, horizon_end=MONDAY + timedelta(days=2))) == 2
    assert len(plan(body, horizon_end=MONDAY + timedelta(days=60))) == 60
    assert len(plan(body, horizon_end=MONDAY + timedelta(days=1000))) == 366


def test_the_planning_horizon_of_the_schedule_clips_the_slots() -> None:
    body = schedule(
        rule(hours(*EVERY_DAY, end="09:30:00")),
        planningHorizon={"start": "2026-01-07", "end": "2026-01-08T23:00:00.000+01:00"},
    )
    assert starts(plan(body)) == ["2026-01-07T09:00:00.000+01:00", "2026-01-08T09:00:00.000+01:00"]
    ended = schedule(rule(hours(*EVERY_DAY)), planningHorizon={"end": "2025-12-31"})
    assert plan(ended) == []


def test_now_must_be_aware() -> None:
    body = schedule(rule(hours("mon")))
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_slots(body, parse_rules(body), [], datetime(2026, 1, 5), REF)


# Malformed rules ---------------------------------------------------------------------------------

AT = "Schedule.extension[0]"
MALFORMED = [
    ("bad-day", rule(hours("monday")), "unknown day 'monday'", f"{AT}.extension[0].extension[0]"),
    (
        "end-before-start",
        rule(hours("mon", start="10:00:00", end="09:00:00")),
        "must end after it starts",
        f"{AT}.extension[0].extension[2]",
    ),
    (
        "empty-range",
        rule(hours("mon", start="10:00:00", end="10:00:00")),
        "must end after it starts",
        f"{AT}.extension[0].extension[2]",
    ),
    ("no-end", rule(hours("mon", end=None)), "availableEndTime, or allDay", f"{AT}.extension[0]"),
    (
        "all-day-with-times",
        rule(
            {
                "url": "availableTime",
                "extension": [*hours("mon")["extension"], {"url": "allDay", "valueBoolean": True}],
            }
        ),
        "allDay",
        f"{AT}.extension[0]",
    ),
    ("bad-time", rule(hours("mon", start="9:00")), "hh:mm:ss", f"{AT}.extension[0].extension[1]"),
    ("no-days", rule(hours()), "at least one daysOfWeek", f"{AT}.extension[0]"),
    (
        "ranges-overlap",
        rule(hours("mon", "tue"), hours("tue", start="09:30:00", end="11:00:00")),
        "overlap on tue",
        AT,
    ),
    ("no-range", {"url": URL, "extension": [duration(15)]}, "at least one availableTime", AT),
    ("no-duration", {"url": URL, "extension": [hours("mon")]}, "needs a duration", AT),
    ("zero-duration", rule(hours("mon"), duration(0)), "greater than zero", f"{AT}.extension[1]"),
    (
        "negative-duration",
        rule(hours("mon"), duration(-15)),
        "greater than zero",
        f"{AT}.extension[1]",
    ),
    (
        "fractional-minutes",
        rule(hours("mon"), duration(7.5)),
        "whole number of minutes",
        f"{AT}.extension[1]",
    ),
    (
        "seconds",
        rule(hours("mon"), duration(900, "s")),
        "unit must be one of min, h",
        f"{AT}.extension[1]",
    ),
    (
        "longer-than-range",
        rule(hours("mon"), duration(90)),
        "no slot would fit",
        f"{AT}.extension[1]",
    ),
    ("zero-seats", rule(hours("mon"), seats(0)), "at least 1", f"{AT}.extension[1]"),
    (
        "seats-as-integer",
        rule(hours("mon"), {"url": "seats", "valueInteger": 2}),
        "valuePositiveInt",
        f"{AT}.extension[1]",
    ),
    (
        "unknown-zone",
        rule(hours("mon"), zone("Europe/Pariss")),
        "unknown time zone 'Europe/Pariss'",
        f"{AT}.extension[1]",
    ),
    (
        "zone-path",
        rule(hours("mon"), zone("../etc/passwd")),
        "unknown time zone",
        f"{AT}.extension[1]",
    ),
    (
        "horizon-over-366-days",
        rule(hours("mon"), horizon(367)),
        "at most 366",
        f"{AT}.extension[1]",
    ),
    (
        "horizon-over-52-weeks",
        rule(hours("mon"), horizon(53, "wk")),
        "at most 366",
        f"{AT}.extension[1]",
    ),
    ("zero-horizon", rule(hours("mon"), horizon(0)), "greater than zero", f"{AT}.extension[1]"),
    (
        "horizon-in-hours",
        rule(hours("mon"), horizon(48, "h")),
        "unit must be one of d, wk",
        f"{AT}.extension[1]",
    ),
    (
        "unknown-part",
        rule(hours("mon"), {"url": "slotLength", "valueInteger": 15}),
        "unknown sub-extension 'slotLength'",
        f"{AT}.extension[1]",
    ),
    (
        "repeated-duration",
        rule(hours("mon"), duration(15), duration(20)),
        "only once",
        f"{AT}.extension[2]",
    ),
]


@pytest.mark.parametrize(
    ("extension", "message", "expression"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_a_malformed_rule_is_refused(
    extension: dict[str, Any], message: str, expression: str
) -> None:
    with pytest.raises(FhirError) as caught:
        parse_rules(schedule(extension))
    error = caught.value
    assert error.status == 422
    [issue] = error.issues
    assert message in issue.diagnostics
    assert issue.expression == (expression,)


def test_the_second_rule_is_named_in_the_error() -> None:
    other = {"url": "http://example.org/other", "valueString": "x"}
    with pytest.raises(FhirError) as caught:
        parse_rules(schedule(other, rule(hours("mon")), rule(hours("xyz"))))
    assert caught.value.issues[0].expression == ("Schedule.extension[2].extension[0].extension[0]",)


# The definition and its documentation ------------------------------------------------------------


def test_the_structure_definition_is_valid_and_matches_the_parser() -> None:
    text = (ROOT / "profiles" / "StructureDefinition-schedule-availability.json").read_text()
    definition = StructureDefinition.model_validate(json.loads(text))
    assert definition.url == URL
    assert (definition.kind, definition.type, definition.derivation) == (
        "complex-type",
        "Extension",
        "constraint",
    )
    assert [(c.type, c.expression) for c in definition.context or []] == [("element", "Schedule")]
    elements = definition.differential.element if definition.differential else []
    rule_slices = {e.sliceName for e in elements if e.path == "Extension.extension" and e.sliceName}
    hours_slices = {
        e.sliceName for e in elements if e.path == "Extension.extension.extension" and e.sliceName
    }
    assert rule_slices == set(RULE_PARTS)
    assert hours_slices == set(HOURS_PARTS)
    fixed = {e.id: e.fixedUri for e in elements if e.fixedUri}
    assert fixed["Extension.url"] == URL


def docs_json_blocks() -> list[dict[str, Any]]:
    text = (ROOT / "docs" / "availability.md").read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]


def test_the_documented_example_is_what_the_server_does() -> None:
    example, documented_slot = docs_json_blocks()
    Schedule.model_validate(example)
    [parsed] = parse_rules(example)
    assert parsed.slot_length == timedelta(minutes=10) and parsed.seats == 3
    assert parsed.zone == PARIS and parsed.horizon == timedelta(days=28)
    slots = plan_slots(example, [parsed], [], datetime(2026, 12, 1, tzinfo=UTC), "Schedule/123")
    assert slots[0] == documented_slot
    weekly = [slot for slot in slots if slot["start"] < "2026-12-08"]
    assert len(weekly) == 21 + 21 + 12  # Wednesday, Saturday mornings; Monday 7th evening
