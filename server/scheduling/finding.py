"""`Appointment/$find`: free slots in a window, as `proposed` Appointments sorted by start.

Only slots bookable right now are proposed: free, in the future, on an active Schedule within its
planning horizon, with a seat that no booking or live hold takes, and, for a vaccination, with a
dose available; a place is never offered more vaccination slots than it has doses available.

Its work follows what is asked, not what is stored (docs/limits.md, `find_*`). The filters are
resolved first into the Schedules they leave, and each one's slots are read from its time line
(the Slot index by schedule and start), a page at a time, all of them merged in start order;
slots that carry a service type or specialty of their own are read from the Slot index by that
code. Only a $find without filters, or whose filters leave more than `find_schedules` Schedules,
reads the window as a whole. Either way at most `find_slots` slots are read; their Schedules,
seats and dose balances are read in batches.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from server.auth.access import Access
from server.fhir import outcome
from server.fhir.search import Parser, SearchRequest
from server.fhir.searchparams import registry
from server.fhir.values import format_instant, parse_instant
from server.limits import Limits
from server.scheduling import ledger, slots
from server.scheduling.claims import claim_of, slot_ids
from server.scheduling.policy import Policy
from server.scheduling.proposals import proposal
from server.scheduling.queries import find_all
from server.store import searching
from server.store.base import Reader, Version

Body = dict[str, Any]
Params = list[tuple[str, str]]
SLOT_PAGE = 200
NEVER = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FindRequest:
    """What to propose. Each list is OR within, AND with the others; references "Type/id"."""

    start: datetime
    end: datetime
    service_types: list[str] = field(default_factory=list)  # tokens: "system|code" or "code"
    specialties: list[str] = field(default_factory=list)
    practitioners: list[str] = field(default_factory=list)
    locations: list[str] = field(default_factory=list)
    organizations: list[str] = field(default_factory=list)
    postal_code: str | None = None
    addresses: list[str] = field(default_factory=list)  # parts of an address (`address` search)
    count: int = 50
    after: Position | None = None  # where the previous page ended
    count_all: bool = False  # count every offer left in the window (`_total=accurate`)


@dataclass(frozen=True)
class Position:
    """A place in the start order of the slots: their start, and those at that very start
    already passed (so that a page never repeats nor skips one)."""

    start: datetime
    passed: frozenset[str] = frozenset()
    offered: dict[str, int] = field(default_factory=dict)  # vaccination offers made, by dose


@dataclass(frozen=True)
class Offer:
    appointment: Body
    slot: Version
    schedule: Version
    dose: str | None = None  # "place|vaccine" of the dose a vaccination offer counts on


@dataclass(frozen=True)
class Found:
    """The offers of one page; `next` where the following page starts, None on the last;
    `left` the offers from this page's first to the window's end, when they were counted."""

    offers: list[Offer]
    next: Position | None
    left: int | None = None


async def find(
    reader: Reader,
    policy: Policy,
    own_base: str,
    request: FindRequest,
    access: Access,
    limits: Limits,
) -> Found:
    """One page of offers, among the slots this client may discover (filtered in the slot
    queries). One offer more than the page is looked for, to know whether another page follows
    (every offer left in the window, when `count_all`: at most `find_slots` slots are read);
    where the reads ran out, the next page starts after the last slot read."""
    _check_window(request, limits)
    now = policy.now()
    actor_filters = await _actor_filters(reader, own_base, request)
    sources = await _sources(reader, own_base, request, actor_filters, access, limits)
    after = request.after
    opening = max(request.start, now) if after is None else max(after.start, now)
    window = [
        ("status", "free,busy-tentative"),  # held by the server's say: lapsed holds free them
        ("start", f"{'gt' if after is None else 'ge'}{format_instant(opening)}"),
        ("start", f"lt{format_instant(request.end)}"),
        ("_sort", "start"),
    ]
    reads = _Reads(limits.find_slots)
    wanted = limits.find_slots if request.count_all else request.count + 1
    page = max(2, math.ceil(_batch(wanted) / max(len(sources), 1)))
    searches = [_search(own_base, "Slot", source + window, access) for source in sources]
    merged = _Merge([_TimeLine(reader, own_base, s, reads, page) for s in searches], after)
    budget = _DoseBudget(reader, now, own_base, after.offered if after else {})
    offers: list[Offer] = []
    while len(offers) < wanted:
        batch = await merged.take(_batch(wanted - len(offers)))
        if not batch:
            break
        offers += await _offers(reader, policy, own_base, request, actor_filters, budget, batch)
    # all the offers left in the window were counted: unless the reads ran out first
    counted = len(offers) if request.count_all and not merged.cut else None
    if len(offers) > request.count:
        shown = offers[: request.count]
        return Found(shown, _position_after(shown, after), counted)
    ended = merged.last if merged.cut and merged.last != after else None
    if ended is not None:
        ended = replace(ended, offered=_offered(offers, after))
    return Found(offers, ended, counted)


def _position_after(offers: list[Offer], after: Position | None) -> Position:
    start = parse_instant((offers[-1].slot.body or {}).get("start")) or NEVER
    passed = {o.slot.id for o in offers if parse_instant((o.slot.body or {}).get("start")) == start}
    return Position(start, frozenset(passed), _offered(offers, after))


def _offered(offers: list[Offer], after: Position | None) -> dict[str, int]:
    """The vaccination offers made up to the end of this page, by dose: a place is offered no
    more vaccination slots than it has doses, across pages too."""
    offered = Counter(after.offered if after else {})
    offered.update(o.dose for o in offers if o.dose is not None)
    return dict(offered)


def _batch(wanted: int) -> int:
    """How many slots to look at for `wanted` more offers: some are held, taken or without a
    dose, so twice as many and a few more, at most a page."""
    return min(SLOT_PAGE, 2 * wanted + 8)


def _check_window(request: FindRequest, limits: Limits) -> None:
    if request.end <= request.start:
        raise outcome.bad_request("$find needs an end after its start")
    if request.end - request.start > timedelta(days=limits.find_window_days):
        raise outcome.bad_request(
            f"$find searches a window of at most {limits.find_window_days} days "
            "(limit find_window_days)",
            "too-costly",
        )
    if request.count < 1:
        raise outcome.bad_request("_count must be at least 1")
    if request.count > limits.find_count:
        raise outcome.bad_request(
            f"_count must be at most {limits.find_count} (limit find_count)", "too-costly"
        )


async def _sources(
    reader: Reader,
    own_base: str,
    request: FindRequest,
    actor_filters: list[set[str]],
    access: Access,
    limits: Limits,
) -> list[Params]:
    """The Slot searches (their conditions beyond the window) whose slots may match: one per
    Schedule the filters leave, on its time line, with the code filters its own codes do not
    meet; without actor filters, one per code filter too, for the slots that carry that code
    themselves. `[[]]`, the window as a whole, without filters or when they leave more than
    `find_schedules` Schedules; `[]` when no Schedule can match."""
    codes = [
        (name, ",".join(tokens))
        for name, tokens in (
            ("service-type", request.service_types),
            ("specialty", request.specialties),
        )
        if tokens
    ]
    if any(not wanted for wanted in actor_filters):
        return []
    if not actor_filters and not codes:
        return [[]]
    actors = [("actor", ",".join(sorted(wanted))) for wanted in actor_filters]
    found = await _schedules_matching(
        reader,
        own_base,
        [*actors, *([] if actor_filters else codes), ("active:not", "false")],
        access,
        limits.find_schedules,
    )
    if found is None:
        return [[]]
    lines = [
        [("schedule", f"Schedule/{v.id}"), *_codes_missing(v.body or {}, request, codes)]
        for v in found
    ]
    return lines if actor_filters else lines + [[code] for code in codes]


def _codes_missing(schedule: Body, request: FindRequest, codes: Params) -> Params:
    """The code filters the Schedule's own service types and specialties do not meet: its slots
    must then carry those codes themselves."""
    own = {
        "service-type": _matches(schedule.get("serviceType", []), request.service_types),
        "specialty": _matches(schedule.get("specialty", []), request.specialties),
    }
    return [(name, tokens) for name, tokens in codes if not own[name]]


async def _schedules_matching(
    reader: Reader, own_base: str, params: Params, access: Access, most: int
) -> list[Version] | None:
    """The Schedules this client may discover that match, in one page; None beyond `most`."""
    search = _search(own_base, "Schedule", params, access)
    search.count, search.total = most + 1, "none"
    found = (await searching.search(reader, search, own_base)).page.versions
    return found if len(found) <= most else None


def _search(own_base: str, resource_type: str, params: Params, access: Access) -> SearchRequest:
    search = Parser(registry(), strict=True, own_base=own_base).parse(resource_type, params)
    search.total = "none"
    hidden = access.filter(resource_type)
    if hidden is not None:
        search.conditions.append(hidden)
    return search


class _Reads:
    """How many more slots this $find may read from the store (`find_slots`)."""

    def __init__(self, most: int) -> None:
        self.left = most


class _TimeLine:
    """One Slot search in start order, read a page at a time as the merge reaches it; each page
    twice the one before, up to SLOT_PAGE."""

    def __init__(
        self, reader: Reader, own_base: str, search: SearchRequest, reads: _Reads, page: int
    ) -> None:
        self._reader, self._own_base, self._search = reader, own_base, search
        self._reads, self._page = reads, page
        self._waiting: deque[Version] = deque()
        self._cursor: str | None = None
        self._ended = False
        self.cut = False  # the reads ran out before the line did

    async def next(self) -> Version | None:
        """The next slot; None at the end of the line, or where the reads ran out (`cut`)."""
        if not self._waiting and not self._ended:
            await self._read()
        return self._waiting.popleft() if self._waiting else None

    async def _read(self) -> None:
        if self._reads.left <= 0:
            self.cut = self._ended = True
            return
        self._search.count = min(self._page, self._reads.left)
        self._search.cursor = self._cursor
        found = (await searching.search(self._reader, self._search, self._own_base)).page
        self._reads.left -= len(found.versions)
        self._waiting.extend(found.versions)
        self._cursor = found.next_cursor
        self._ended = not found.next_cursor
        self._page = min(self._page * 2, SLOT_PAGE)


class _Merge:
    """The slots of every time line in start order, each once. It ends where any line was cut
    short by the reads: past that point, the slots that line did not read could come first."""

    def __init__(self, lines: list[_TimeLine], after: Position | None = None) -> None:
        self._lines = lines
        self._heads: list[tuple[datetime, int, Version]] = []
        self._behind: list[int] | None = None  # lines whose next slot is not among the heads
        self._cut = False
        self._seen: set[str] = set(after.passed) if after else set()
        self.last: Position | None = after  # the last slot taken

    @property
    def cut(self) -> bool:
        return self._cut

    async def take(self, most: int) -> list[Version]:
        """Up to `most` more slots; a line is read further only when its next slot is needed."""
        if self._behind is None:
            self._behind = list(range(len(self._lines)))
        taken: list[Version] = []
        while len(taken) < most and not self._cut:
            for n in self._behind:
                await self._advance(n)
            self._behind = []
            if self._cut or not self._heads:
                break
            start, n, slot = heapq.heappop(self._heads)
            self._behind = [n]
            if slot.id not in self._seen:
                self._seen.add(slot.id)
                taken.append(slot)
                self._note(start, slot.id)
        return taken

    def _note(self, start: datetime, slot_id: str) -> None:
        same = self.last is not None and self.last.start == start
        passed = (self.last.passed if self.last and same else frozenset()) | {slot_id}
        self.last = Position(start, passed)

    async def _advance(self, n: int) -> None:
        """Put line `n`'s next slot among the heads; the merge ends if the line was cut."""
        line = self._lines[n]
        slot = await line.next()
        self._cut = self._cut or line.cut
        if slot is not None:
            start = parse_instant((slot.body or {}).get("start")) or NEVER
            heapq.heappush(self._heads, (start, n, slot))


async def _actor_filters(reader: Reader, own_base: str, request: FindRequest) -> list[set[str]]:
    """One set of acceptable actors per filter given: a Schedule must have an actor in each."""
    filters: list[set[str]] = []
    if request.practitioners:
        filters.append({_typed(p, "Practitioner") for p in request.practitioners})
    if request.locations:
        filters.append({_typed(p, "Location") for p in request.locations})
    if request.organizations:
        organizations = ",".join(_typed(o, "Organization") for o in request.organizations)
        places = await find_all(reader, own_base, "Location", [("organization", organizations)])
        roles = await find_all(
            reader, own_base, "PractitionerRole", [("organization", organizations)]
        )
        filters.append(
            {f"Location/{v.id}" for v in places}
            | {(v.body or {}).get("practitioner", {}).get("reference", "") for v in roles}
        )
    if request.postal_code:
        filters.append(
            await _addressed(reader, own_base, "address-postalcode", request.postal_code)
        )
    if request.addresses:
        filters.append(await _addressed(reader, own_base, "address", ",".join(request.addresses)))
    return filters


async def _addressed(reader: Reader, own_base: str, param: str, value: str) -> set[str]:
    """The Locations and Practitioners whose address matches (`address`, `address-postalcode`)."""
    return {
        f"{kind}/{v.id}"
        for kind in ("Location", "Practitioner")
        for v in await find_all(reader, own_base, kind, [(param, value)])
    }


def _typed(reference: str, kind: str) -> str:
    """A relative reference of the expected type; a bare id is taken as one."""
    tail = reference.rstrip("/").split("/")
    if len(tail) >= 2 and tail[-2] == kind:
        return f"{kind}/{tail[-1]}"
    if len(tail) == 1 and tail[0]:
        return f"{kind}/{tail[0]}"
    raise outcome.bad_request(f"{reference!r} is not a reference to a {kind}")


async def _offers(
    reader: Reader,
    policy: Policy,
    own_base: str,
    request: FindRequest,
    actor_filters: list[set[str]],
    budget: _DoseBudget,
    page: list[Version],
) -> list[Offer]:
    schedules = await _schedules(reader, page)
    taken = await _occupancy(reader, own_base, policy.now(), page)
    offers = []
    for slot in page:
        body = slot.body or {}
        schedule = schedules.get(body.get("schedule", {}).get("reference", ""))
        if schedule is None or slots.not_bookable(slot, schedule.body, policy.now()):
            continue
        plan = schedule.body or {}
        if taken[slot.id] >= slots.capacity(body) or not _wanted(
            body, plan, request, actor_filters
        ):
            continue
        vaccination = policy.is_vaccination(body.get("serviceType") or plan.get("serviceType", []))
        dose = await budget.take(plan) if vaccination else None
        if vaccination and dose is None:
            continue
        offers.append(Offer(proposal(slot, plan), slot, schedule, dose))
    return offers


def _wanted(
    slot: Body, schedule: Body, request: FindRequest, actor_filters: list[set[str]]
) -> bool:
    actors = {a.get("reference", "") for a in schedule.get("actor", [])}
    if any(not (actors & wanted) for wanted in actor_filters):
        return False
    service_types = slot.get("serviceType") or schedule.get("serviceType", [])
    specialties = slot.get("specialty") or schedule.get("specialty", [])
    return _matches(service_types, request.service_types) and _matches(
        specialties, request.specialties
    )


def _matches(concepts: list[Body], tokens: list[str]) -> bool:
    if not tokens:
        return True
    for concept in concepts:
        for coding in concept.get("coding", []):
            system, code = coding.get("system"), coding.get("code")
            if code in tokens or f"{system}|{code}" in tokens:
                return True
    return False


async def _schedules(reader: Reader, page: list[Version]) -> dict[str, Version]:
    wanted = {
        ("Schedule", (s.body or {}).get("schedule", {}).get("reference", "").rpartition("/")[2])
        for s in page
    }
    return {f"Schedule/{v.id}": v for v in await reader.current_many(sorted(wanted))}


async def _occupancy(
    reader: Reader, own_base: str, now: datetime, page: list[Version]
) -> Counter[str]:
    """Seats taken per slot of the page, by bookings and live holds, in one search."""
    if not page:
        return Counter()
    takers = await find_all(
        reader,
        own_base,
        "Appointment",
        [("slot", ",".join(f"Slot/{s.id}" for s in page)), ("status", slots.TAKING_STATUSES)],
    )
    taken: Counter[str] = Counter()
    for version in takers:
        if claim_of(version.body, now, own_base).takes_slots:
            for slot_id in slot_ids(version.body or {}, own_base):
                taken[slot_id] += 1
    return taken


class _DoseBudget:
    """How many more vaccination slots each (place, vaccine) may be offered: its available
    doses, read once per $find, less those the earlier pages offered (`Position.offered`)."""

    def __init__(
        self, reader: Reader, now: datetime, own_base: str, offered: dict[str, int]
    ) -> None:
        self._reader, self._now, self._own_base = reader, now, own_base
        self._offered = offered
        self._left: dict[str, int] = {}

    async def take(self, schedule: Body) -> str | None:
        """The "place|vaccine" key of the dose an offer counts on, or None if none is left."""
        place, vaccine = ledger.place_of(schedule, self._own_base), ledger.vaccine_of(schedule)
        if place is None or vaccine is None:
            return None
        key = f"{place}|{ledger.vaccine_key(vaccine)}"
        if key not in self._left:
            balances = await ledger.balances(self._reader, place, self._now, self._own_base)
            balance = balances.get(ledger.vaccine_key(vaccine))
            available = balance.available if balance else 0
            self._left[key] = available - self._offered.get(key, 0)
        if self._left[key] <= 0:
            return None
        self._left[key] -= 1
        return key
