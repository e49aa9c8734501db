"""`Appointment/$find`: free slots in a window, as `proposed` Appointments sorted by start.

Only slots bookable right now are proposed: free, in the future, on an active Schedule within its
planning horizon, with a seat that no booking or live hold takes, and, for a vaccination, with a
dose available; a place is never offered more vaccination slots than it has doses available.
The slots come from the Slot index by start time, a page at a time, and are filtered with their
Schedules, appointments and ledgers read in batches.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from server.auth.access import Access
from server.fhir import outcome
from server.fhir.search import Parser
from server.fhir.searchparams import registry
from server.fhir.values import format_instant
from server.scheduling import ledger, slots
from server.scheduling.claims import claim_of, slot_ids
from server.scheduling.policy import Policy
from server.scheduling.proposals import proposal
from server.scheduling.queries import find_all
from server.store import searching
from server.store.base import Reader, Version

Body = dict[str, Any]
MAX_WINDOW = timedelta(days=31)
MAX_COUNT = 500
SLOT_PAGE = 200


@dataclass(frozen=True)
class FindRequest:
    start: datetime
    end: datetime
    service_types: list[str] = field(default_factory=list)  # tokens: "system|code" or "code"
    specialties: list[str] = field(default_factory=list)
    practitioner: str | None = None
    location: str | None = None
    organization: str | None = None
    postal_code: str | None = None
    count: int = 50


@dataclass(frozen=True)
class Offer:
    appointment: Body
    slot: Version
    schedule: Version


async def find(
    reader: Reader, policy: Policy, own_base: str, request: FindRequest, access: Access
) -> list[Offer]:
    """The offers, among the slots this client may discover (filtered in the slot query)."""
    _check_window(request)
    actor_filters = await _actor_filters(reader, own_base, request)
    now = policy.now()
    params = [
        ("status", "free"),
        ("start", f"gt{format_instant(max(request.start, now))}"),
        ("start", f"lt{format_instant(request.end)}"),
        ("_sort", "start"),
    ]
    if actor_filters:
        narrowest = min(actor_filters, key=len)
        schedules = (
            await find_all(reader, own_base, "Schedule", [("actor", ",".join(sorted(narrowest)))])
            if narrowest
            else []
        )
        if not schedules:
            return []
        params.append(("schedule", ",".join(f"Schedule/{v.id}" for v in schedules)))
    search = Parser(registry(), strict=True, own_base=own_base).parse("Slot", params)
    search.count, search.total = SLOT_PAGE, "none"
    hidden = access.filter("Slot")
    if hidden is not None:
        search.conditions.append(hidden)
    budget = _DoseBudget(reader, now, own_base)
    offers: list[Offer] = []
    while len(offers) < request.count:
        page = (await searching.search(reader, search, own_base)).page
        offers += await _offers(
            reader, policy, own_base, request, actor_filters, budget, page.versions
        )
        if not page.next_cursor:
            break
        search.cursor = page.next_cursor
    return offers[: request.count]


def _check_window(request: FindRequest) -> None:
    if request.end <= request.start:
        raise outcome.bad_request("$find needs an end after its start")
    if request.end - request.start > MAX_WINDOW:
        raise outcome.bad_request("$find searches a window of at most 31 days")
    if not 1 <= request.count <= MAX_COUNT:
        raise outcome.bad_request(f"_count must be between 1 and {MAX_COUNT}")


async def _actor_filters(reader: Reader, own_base: str, request: FindRequest) -> list[set[str]]:
    """One set of acceptable actors per filter given: a Schedule must have an actor in each."""
    filters: list[set[str]] = []
    if request.practitioner:
        filters.append({_typed(request.practitioner, "Practitioner")})
    if request.location:
        filters.append({_typed(request.location, "Location")})
    if request.organization:
        organization = _typed(request.organization, "Organization")
        places = await find_all(reader, own_base, "Location", [("organization", organization)])
        roles = await find_all(
            reader, own_base, "PractitionerRole", [("organization", organization)]
        )
        filters.append(
            {f"Location/{v.id}" for v in places}
            | {(v.body or {}).get("practitioner", {}).get("reference", "") for v in roles}
        )
    if request.postal_code:
        code = request.postal_code
        found = [
            f"{kind}/{v.id}"
            for kind in ("Location", "Practitioner")
            for v in await find_all(reader, own_base, kind, [("address-postalcode", code)])
        ]
        filters.append(set(found))
    return filters


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
        if vaccination and not await budget.take(plan):
            continue
        offers.append(Offer(proposal(slot, plan), slot, schedule))
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
    doses, read once per $find."""

    def __init__(self, reader: Reader, now: datetime, own_base: str) -> None:
        self._reader, self._now, self._own_base = reader, now, own_base
        self._left: dict[tuple[str, str], int] = {}

    async def take(self, schedule: Body) -> bool:
        place, vaccine = ledger.place_of(schedule, self._own_base), ledger.vaccine_of(schedule)
        if place is None or vaccine is None:
            return False
        key = (place, ledger.vaccine_key(vaccine))
        if key not in self._left:
            balances = await ledger.balances(self._reader, place, self._now, self._own_base)
            balance = balances.get(key[1])
            self._left[key] = balance.available if balance else 0
        if self._left[key] <= 0:
            return False
        self._left[key] -= 1
        return True
