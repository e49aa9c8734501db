"""Recurring availability rules on a Schedule, and the Slots they describe.

A Schedule carries zero or more `schedule-availability` extensions
(`profiles/StructureDefinition-schedule-availability.json`, explained in `docs/availability.md`).
`parse_rules` reads and checks them; `plan_slots` expands them into the free Slot bodies the
schedule still lacks. Both are pure: no store, no HTTP, no clock (the caller passes `now`).

Hours are wall-clock times in the rule's IANA time zone. Each opening range is first turned into
two instants, then cut into slots in absolute time, so that a slot always lasts its length, also on
the days the clocks change.
"""

from __future__ import annotations

import copy
import heapq
import re
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate, pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.fhir.outcome import FhirError, invalid_one
from server.fhir.values import period_bounds
from server.limits import Limits
from server.scheduling.slot_shape import PARTS as SHAPE_PARTS
from server.scheduling.slot_shape import PLAIN, SlotShape, apply, parse_shape

URL = "https://fhir.creneau.org/StructureDefinition/schedule-availability"
SLOT_CAPACITY = "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # position = date.weekday()
RULE_PARTS = (
    "availableTime",
    "duration",
    "serviceType",
    "seats",
    "horizon",
    "timezone",
    *SHAPE_PARTS,
)
HOURS_PARTS = ("daysOfWeek", "allDay", "availableStartTime", "availableEndTime")
DEFAULT_ZONE = "Europe/Paris"
DEFAULT_HORIZON = timedelta(days=28)
MAX_HORIZON = timedelta(days=366)  # what the format allows; the server's cap may be lower
MAX_SEATS = 2**31 - 1  # a FHIR integer, as slot-capacity's valueInteger
SLOT_UNITS = {"min": timedelta(minutes=1), "h": timedelta(hours=1)}
HORIZON_UNITS = {"d": timedelta(days=1), "wk": timedelta(weeks=1)}
TIME_OF_DAY = re.compile(r"([01]\d|2[0-3]):([0-5]\d):([0-5]\d)")  # fullmatch: no "\n" after

Part = tuple[str, dict[str, Any]]  # (FHIRPath of a sub-extension, the sub-extension)
Span = tuple[datetime, datetime]  # [start, end) as aware datetimes


@dataclass(frozen=True)
class Caps:
    """How much the rules of one Schedule may ask of the server. The defaults are only what the
    format allows; the server passes its own, from its `Limits` (docs/limits.md)."""

    shortest_slot: timedelta = timedelta(minutes=1)
    longest_horizon: timedelta = MAX_HORIZON
    slots: int | None = None  # the most slots one planning may describe; None: no cap

    @classmethod
    def of(cls, limits: Limits) -> Caps:
        return cls(
            shortest_slot=timedelta(minutes=max(1, limits.min_slot_minutes)),
            longest_horizon=min(timedelta(days=limits.generation_horizon_days), MAX_HORIZON),
            slots=limits.generated_slots,
        )


FORMAT_ONLY = Caps()


@dataclass(frozen=True)
class Hours:
    """One opening range on some days of the week, as wall-clock offsets from local midnight."""

    days: frozenset[int]  # date.weekday(): 0 is Monday
    opens: timedelta
    closes: timedelta  # 24 h for allDay: the next local midnight


@dataclass(frozen=True)
class Rule:
    hours: tuple[Hours, ...]
    slot_length: timedelta
    zone: ZoneInfo
    seats: int = 1
    horizon: timedelta = DEFAULT_HORIZON
    service_type: tuple[dict[str, Any], ...] = ()
    shape: SlotShape = PLAIN


# Reading the extension ---------------------------------------------------------------------------


def parse_rules(schedule: dict[str, Any], caps: Caps = FORMAT_ONLY) -> list[Rule]:
    """The availability rules of a Schedule body; [] when it has none.

    Raises `invalid_one` (422) naming the faulty sub-extension for a malformed rule, or one that
    asks for shorter slots or a farther horizon than `caps` allow."""
    extensions = schedule.get("extension")
    if not isinstance(extensions, list):
        return []
    return [
        _parse_rule(extension, f"Schedule.extension[{i}]", caps)
        for i, extension in enumerate(extensions)
        if isinstance(extension, dict) and extension.get("url") == URL
    ]


def _parse_rule(extension: dict[str, Any], where: str, caps: Caps) -> Rule:
    parts = _parts(extension, where, RULE_PARTS)
    hours = tuple(_parse_hours(part) for part in parts.get("availableTime", []))
    if not hours:
        raise invalid_one("an availability rule needs at least one availableTime", where)
    _check_ranges_apart(hours, where)
    duration = _single(parts, "duration", where)
    if duration is None:
        raise invalid_one("an availability rule needs a duration (the slot length)", where)
    slot_length = _slot_length(duration, hours, caps.shortest_slot)
    seats, horizon, zone = (
        _single(parts, name, where) for name in ("seats", "horizon", "timezone")
    )
    return Rule(
        hours=hours,
        slot_length=slot_length,
        zone=_zone(zone) if zone else ZoneInfo(DEFAULT_ZONE),
        seats=_seats(seats) if seats else 1,
        horizon=_horizon(horizon, caps.longest_horizon) if horizon else DEFAULT_HORIZON,
        service_type=tuple(
            _value(p, "valueCodeableConcept", dict) for p in parts.get("serviceType", [])
        ),
        shape=parse_shape(parts),
    )


def _parse_hours(part: Part) -> Hours:
    where, extension = part
    parts = _parts(extension, where, HOURS_PARTS)
    days = frozenset(_day(p) for p in parts.get("daysOfWeek", []))
    if not days:
        raise invalid_one("availableTime needs at least one daysOfWeek", where)
    all_day = _single(parts, "allDay", where)
    start = _single(parts, "availableStartTime", where)
    end = _single(parts, "availableEndTime", where)
    if all_day and _value(all_day, "valueBoolean", bool):
        if start or end:
            raise invalid_one("an allDay availableTime takes no start or end time", where)
        return Hours(days, timedelta(0), timedelta(days=1))
    if start is None or end is None:
        raise invalid_one(
            "availableTime needs availableStartTime and availableEndTime, or allDay true", where
        )
    opens, closes = _time_of_day(start), _time_of_day(end)
    if closes <= opens:
        raise invalid_one(
            f"availableTime must end after it starts, not {start[1]['valueTime']} to "
            f"{end[1]['valueTime']}; a range cannot cross midnight: split it in two",
            end[0],
        )
    return Hours(days, opens, closes)


def _parts(extension: dict[str, Any], where: str, known: tuple[str, ...]) -> dict[str, list[Part]]:
    """The sub-extensions by name; an unknown one is refused, as a typo would silently drop it."""
    parts: dict[str, list[Part]] = {}
    subs = extension.get("extension")
    for j, sub in enumerate(subs if isinstance(subs, list) else []):
        name = sub.get("url") if isinstance(sub, dict) else None
        if name not in known:
            raise invalid_one(
                f"unknown sub-extension {name!r}: expected one of {', '.join(known)}",
                f"{where}.extension[{j}]",
            )
        parts.setdefault(name, []).append((f"{where}.extension[{j}]", sub))
    return parts


def _single(parts: dict[str, list[Part]], name: str, where: str) -> Part | None:
    found = parts.get(name, [])
    if len(found) > 1:
        raise invalid_one(f"{name} may appear only once", found[1][0])
    return found[0] if found else None


def _value(part: Part, key: str, kind: type) -> Any:
    where, extension = part
    value = extension.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid_one(f"{extension['url']} needs a {key}", where)
    return value


def _day(part: Part) -> int:
    code = _value(part, "valueCode", str)
    if code not in DAYS:
        raise invalid_one(f"unknown day {code!r} in daysOfWeek: use {', '.join(DAYS)}", part[0])
    return DAYS.index(code)


def _time_of_day(part: Part) -> timedelta:
    text = _value(part, "valueTime", str)
    match = TIME_OF_DAY.fullmatch(text)
    if not match:
        raise invalid_one(f"{part[1]['url']} must be a time of day hh:mm:ss, not {text!r}", part[0])
    hours, minutes, seconds = (int(group) for group in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _check_ranges_apart(hours: tuple[Hours, ...], where: str) -> None:
    for day, name in enumerate(DAYS):
        ranges = sorted((h.opens, h.closes) for h in hours if day in h.days)
        if any(later[0] < earlier[1] for earlier, later in pairwise(ranges)):
            raise invalid_one(f"availableTime ranges overlap on {name}", where)


def _duration(part: Part, units: dict[str, timedelta], most: timedelta, beyond: str) -> timedelta:
    """A positive Duration of at most `most` (else 422 with `beyond`), compared before it is
    multiplied out, so that no number (1e308, 10**400) can overflow a timedelta."""
    where, extension = part
    quantity = _value(part, "valueDuration", dict)
    amount, unit = quantity.get("value"), quantity.get("code") or quantity.get("unit")
    if unit not in units:
        raise invalid_one(
            f"{extension['url']} unit must be one of {', '.join(units)} (UCUM), not {unit!r}", where
        )
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not amount > 0:
        raise invalid_one(f"{extension['url']} must be greater than zero", where)
    if amount > most / units[unit]:  # also infinity; NaN failed `amount > 0`
        raise invalid_one(beyond, where)
    return amount * units[unit]


def _slot_length(part: Part, hours: tuple[Hours, ...], shortest_slot: timedelta) -> timedelta:
    """A whole number of minutes, no shorter than `shortest_slot`, that fits at least once in
    every range of the rule."""
    shortest = min(h.closes - h.opens for h in hours)
    length = _duration(
        part,
        SLOT_UNITS,
        shortest,
        f"duration is longer than the shortest availableTime range ({_minutes(shortest)} min): "
        "no slot would fit",
    )
    if length % timedelta(minutes=1):
        raise invalid_one("duration must be a whole number of minutes", part[0])
    if length < shortest_slot:
        raise invalid_one(
            f"duration is {_minutes(length)} min; slots last at least {_minutes(shortest_slot)} "
            "min on this server (min_slot_minutes)",
            part[0],
        )
    return length


def _horizon(part: Part, longest: timedelta) -> timedelta:
    beyond = (
        f"horizon is at most {longest.days} days on this server (generation_horizon_days)"
        if longest < MAX_HORIZON
        else f"horizon is at most {MAX_HORIZON.days} days"
    )
    horizon = _duration(part, HORIZON_UNITS, longest, beyond)
    if horizon % timedelta(days=1):
        raise invalid_one("horizon must be a whole number of days", part[0])
    return horizon


def _seats(part: Part) -> int:
    seats: int = _value(part, "valuePositiveInt", int)
    if seats < 1:
        raise invalid_one(f"seats must be at least 1, not {seats}", part[0])
    if seats > MAX_SEATS:
        raise invalid_one(f"seats must be at most {MAX_SEATS}", part[0])
    return seats


def _zone(part: Part) -> ZoneInfo:
    key = _value(part, "valueCode", str)
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid_one(
            f"unknown time zone {key!r}: use an IANA name such as Europe/Paris", part[0]
        ) from None


def _minutes(length: timedelta) -> int:
    return int(length.total_seconds() // 60)


# Planning the slots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    slots: list[dict[str, Any]]  # the new free Slot bodies, ordered by start
    skipped: int  # the slots described that exist already, or overlap an existing Slot


def plan_slots(
    schedule: dict[str, Any],
    rules: list[Rule],
    existing: list[dict[str, Any]],
    now: datetime,
    schedule_reference: str,
    *,
    horizon_end: datetime | None = None,
    caps: Caps = FORMAT_ONLY,
) -> list[dict[str, Any]]:
    """The new free Slot bodies the rules describe, ordered by start (see `plan`)."""
    return plan(
        schedule, rules, existing, now, schedule_reference, horizon_end=horizon_end, caps=caps
    ).slots


def plan(
    schedule: dict[str, Any],
    rules: list[Rule],
    existing: list[dict[str, Any]],
    now: datetime,
    schedule_reference: str,
    *,
    horizon_end: datetime | None = None,
    caps: Caps = FORMAT_ONLY,
) -> Plan:
    """The new free Slots the rules describe, and how many described ones are there already.

    A slot is planned if it starts after `now`, ends within the window (`now` + the rule's
    horizon, or `horizon_end` when given, never beyond `now` + `caps.longest_horizon`, and inside
    the Schedule's planningHorizon when it has one), and neither equals nor overlaps an `existing`
    Slot of any status, nor one planned from an earlier-starting candidate (when rules overlap
    each other: the overlapping candidates are dropped as they stream by).

    The rules' slots are merged lazily, one rule's day at a time, and counted as they come, each
    rule on its own: past `caps.slots` of them the planning stops with 422 `too-costly`, so
    neither time nor memory grows beyond the cap, whatever the rules say."""
    for moment in (now, horizon_end):
        if moment is not None and moment.tzinfo is None:
            raise ValueError("now and horizon_end must be timezone-aware")
    occupied = _Occupied(_spans(existing))
    fallback = tuple(schedule.get("serviceType") or ())
    planned: list[dict[str, Any]] = []
    skipped = 0
    reached: datetime | None = None  # the latest end among the slots planned so far
    described: datetime | None = None  # the same, had no Slot existed
    candidates = _candidates(schedule, rules, now, horizon_end, caps.longest_horizon)
    for count, (start, end, index) in enumerate(candidates, start=1):
        if caps.slots is not None and count > caps.slots:
            raise _too_many(caps.slots)
        distinct = described is None or start >= described
        if distinct:
            described = end
        if occupied.overlaps(start, end) or (reached is not None and start < reached):
            skipped += 1 if distinct else 0
            continue
        planned.append(_slot_body(start, end, rules[index], fallback, schedule_reference))
        reached = end if reached is None else max(reached, end)
    return Plan(planned, skipped)


def without_overlaps(
    planned: list[dict[str, Any]], existing: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The planned Slots that neither equal nor overlap an existing one (written meanwhile)."""
    occupied = _Occupied(_spans(existing))
    return [slot for slot in planned if not occupied.overlaps(*_span(slot))]


def _too_many(cap: int) -> FhirError:
    return invalid_one(
        f"These availability rules describe more than {cap} slots (generated_slots): "
        "use longer slots, fewer hours or a shorter horizon, or split them across Schedules",
        "Schedule.extension",
        code="too-costly",
    )


def _candidates(
    schedule: dict[str, Any],
    rules: list[Rule],
    now: datetime,
    horizon_end: datetime | None,
    longest: timedelta,
) -> Iterator[tuple[datetime, datetime, int]]:
    """Every slot of every rule inside its window, as (start, end, rule index), merged in that
    order from one sorted stream per rule."""
    opening, closing = _planning_horizon(schedule)
    streams = []
    for index, rule in enumerate(rules):
        end = now + rule.horizon if horizon_end is None else horizon_end
        last = min(end, now + longest, closing)
        streams.append(_window_slots(rule, index, now, opening, last))
    return heapq.merge(*streams)


def _window_slots(
    rule: Rule, index: int, now: datetime, opening: datetime, last: datetime
) -> Iterator[tuple[datetime, datetime, int]]:
    """The rule's slots that start after `now` and from `opening`, and end by `last`."""
    first = max(now, opening)
    if first >= last:
        return
    for start, stop in _rule_slots(rule, first, last):
        if start > now and start >= opening and stop <= last:
            yield start, stop, index


def _rule_slots(rule: Rule, first: datetime, last: datetime) -> Iterator[Span]:
    """The slots of a rule on every local date from `first` to `last`, in UTC, by start.

    A day's slots are sorted before they are given: a wall time the clocks skip can put a range
    after a later one, and the merge of the rules needs each rule in order."""
    day = first.astimezone(rule.zone).date()
    final = last.astimezone(rule.zone).date()
    while day <= final:
        ranges = (hours for hours in rule.hours if day.weekday() in hours.days)
        yield from sorted(span for hours in ranges for span in _range_slots(day, hours, rule))
        day += timedelta(days=1)


def _range_slots(day: date, hours: Hours, rule: Rule) -> Iterator[Span]:
    """Consecutive slots from the range's opening; the last one that would not fit is dropped."""
    start, closes = _instant(day, hours.opens, rule.zone), _instant(day, hours.closes, rule.zone)
    while start + rule.slot_length <= closes:
        yield start, start + rule.slot_length
        start += rule.slot_length


def _instant(day: date, offset: timedelta, zone: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time (an offset from local midnight) in a zone.

    Arithmetic on aware datetimes in one zone is wall-clock arithmetic in Python, so the slots
    are stepped in UTC. A wall time that the clock skips or repeats takes the earlier offset."""
    wall = datetime.combine(day, time()) + offset
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _planning_horizon(schedule: dict[str, Any]) -> Span:
    """Schedule.planningHorizon as instants, each missing bound left open. A horizon that is not
    a Period of dates (refused when a Schedule is written) leaves nothing open."""
    opening, closing = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    try:
        start, end = period_bounds(schedule.get("planningHorizon"))
    except ValueError:
        return closing, opening
    return start or opening, end or closing


def _slot_body(
    start: datetime,
    end: datetime,
    rule: Rule,
    fallback: tuple[dict[str, Any], ...],
    schedule_reference: str,
) -> dict[str, Any]:
    slot: dict[str, Any] = {"resourceType": "Slot"}
    if rule.seats > 1:
        slot["extension"] = [{"url": SLOT_CAPACITY, "valueInteger": rule.seats}]
    slot["schedule"] = {"reference": schedule_reference}
    service_type = rule.service_type or fallback
    if service_type:
        slot["serviceType"] = copy.deepcopy(list(service_type))
    slot["status"] = "free"
    slot["start"] = start.astimezone(rule.zone).isoformat(timespec="milliseconds")
    slot["end"] = end.astimezone(rule.zone).isoformat(timespec="milliseconds")
    return apply(slot, rule.shape)


def _span(slot: dict[str, Any]) -> Span:
    """The span of a Slot planned here (its instants are always well formed)."""
    return datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])


def _spans(slots: Iterable[dict[str, Any]]) -> Iterator[Span]:
    for slot in slots:
        start, end = _parse_instant(slot.get("start")), _parse_instant(slot.get("end"))
        if start is not None and end is not None:
            yield start, end


def _parse_instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Occupied:
    """The existing slots' time ranges, asking "does [start, end) overlap any?" in O(log n)."""

    def __init__(self, spans: Iterable[Span]) -> None:
        ordered = sorted(spans)
        self._starts = [start for start, _ in ordered]
        self._reach = list(accumulate((end for _, end in ordered), max))  # latest end so far

    def overlaps(self, start: datetime, end: datetime) -> bool:
        before = bisect_left(self._starts, end)  # the ranges that start before `end`
        return before > 0 and self._reach[before - 1] > start
