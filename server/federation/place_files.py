"""The Location and Schedule files, streamed from the Schedules the reader may discover.

The Schedule file holds the Schedules (the active ones; with `_since`, those changed since,
switched off or not). A Schedule that names no `serviceType` (the SAS shape gives its Slots
theirs) is published with that of its first future Slot; one with neither is left out.

The Location file holds the Locations the published Schedules are at, each with
`has-availability`: `some` when one of its Schedules has a Slot published `free`, `none`
otherwise, so a vaccination place with no dose on hand says `none`. Its phones are its own,
else its managing Organization's, else those of the PractitionerRoles its Schedules name
(SMART asks a Location for one). With `_since`: the Locations changed since, and those whose
Schedules' Slots changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

from server.federation import lines, slot_files
from server.federation.snapshot import Placed, Snapshot, match
from server.fhir.values import format_instant, split_reference
from server.store.base import Query, Version

BATCH = 200  # Locations whose phones are read together
FIRST_FREE = 10  # free Slots looked at for a Schedule's availability

Body = dict[str, Any]


async def schedules(snapshot: Snapshot) -> AsyncIterator[bytes]:
    async for page in snapshot.placed():
        found = []
        for placed in page:
            if not _published(snapshot, placed):
                continue
            services = placed.body.get("serviceType") or await _services_of_slots(snapshot, placed)
            if services:
                names = _names(placed)
                line = lines.schedule_line(placed.body, services, names, snapshot.own_base)
                found.append(orjson.dumps(line) + b"\n")
        yield b"".join(found)


@dataclass
class Place:
    """A published Location and the Schedules at it."""

    location: Version
    schedules: list[Placed] = field(default_factory=list)


async def locations(snapshot: Snapshot) -> AsyncIterator[bytes]:
    places: dict[str, Place] = {}
    async for page in snapshot.placed():
        for placed in page:
            if placed.location is not None:
                place = places.setdefault(placed.location.id, Place(placed.location))
                place.schedules.append(placed)
    touched: set[str] = set()
    if snapshot.since is not None:
        every = [p for place in places.values() for p in place.schedules]
        touched = await slot_files.touched(snapshot, every)
    for batch in _batches([places[i] for i in sorted(places)], BATCH):
        wanted = [place for place in batch if _wanted(snapshot, place, touched)]
        phones = await _phones(snapshot, wanted)
        found = []
        for place in wanted:
            available = await _available(snapshot, place.schedules)
            body = place.location.body or {}
            line = lines.location_line(body, phones[place.location.id], available)
            found.append(orjson.dumps(line) + b"\n")
        yield b"".join(found)


def _published(snapshot: Snapshot, placed: Placed) -> bool:
    if snapshot.since is None:
        return placed.body.get("active") is not False
    return snapshot.changed(placed.schedule)


def _wanted(snapshot: Snapshot, place: Place, touched: set[str]) -> bool:
    if snapshot.since is None:
        return any(p.body.get("active") is not False for p in place.schedules)
    return snapshot.changed(place.location) or any(
        p.schedule.id in touched for p in place.schedules
    )


def _names(placed: Placed) -> dict[str, str]:
    location = placed.location
    name = (location.body or {}).get("name") if location is not None else None
    return {f"Location/{location.id}": name} if location is not None and name else {}


async def _services_of_slots(snapshot: Snapshot, placed: Placed) -> list[Any]:
    """The serviceType of the Schedule's first future Slot."""
    query = Query("Slot", _future(snapshot, placed), count=1)
    found = await snapshot.store.find(query)
    first = found.versions[0].body if found.versions else None
    services = (first or {}).get("serviceType")
    return services if isinstance(services, list) else []


async def _available(snapshot: Snapshot, group: list[Placed]) -> bool:
    """Whether one of the Schedules has a Slot published `free`."""
    for placed in group:
        if placed.body.get("active") is False:
            continue
        free = [*_future(snapshot, placed), match("Slot", "status", "free")]
        found = await snapshot.store.find(Query("Slot", free, count=FIRST_FREE))
        for slot in found.versions:
            if await snapshot.bookability.status(slot, placed.body) == "free":
                return True
    return False


def _future(snapshot: Snapshot, placed: Placed) -> list[Any]:
    return [
        *snapshot.visible_of(placed.schedule),
        match("Slot", "schedule", f"Schedule/{placed.schedule.id}"),
        match("Slot", "start", f"gt{format_instant(snapshot.now)}"),
    ]


async def _phones(snapshot: Snapshot, places: list[Place]) -> dict[str, list[Body]]:
    """Each Location's phones: its own, else the first of its fallbacks that has some (read in
    one trip for the batch)."""
    fallbacks = {
        place.location.id: _fallbacks(place, snapshot.own_base)
        for place in places
        if not lines.phones(place.location.body)
    }
    keys = sorted({(r.split("/")[0], r.split("/")[1]) for refs in fallbacks.values() for r in refs})
    found = {f"{v.type}/{v.id}": v.body for v in await snapshot.store.current_many(keys)}
    phones: dict[str, list[Body]] = {}
    for place in places:
        others = (lines.phones(found.get(r)) for r in fallbacks.get(place.location.id, []))
        own = lines.phones(place.location.body)
        phones[place.location.id] = own or next((p for p in others if p), [])
    return phones


def _fallbacks(place: Place, own_base: str) -> list[str]:
    """Where else a Location's phones are: its managing Organization, its PractitionerRoles."""
    owner = (place.location.body or {}).get("managingOrganization")
    found = _refs([owner] if isinstance(owner, dict) else [], "Organization", own_base)
    for placed in place.schedules:
        found += _refs(placed.body.get("actor", []), "PractitionerRole", own_base)
    return found


def _refs(references: list[Any], kind: str, own_base: str) -> list[str]:
    found = []
    for item in references:
        reference = item.get("reference") if isinstance(item, dict) else None
        target, ident = (
            split_reference(reference, own_base) if isinstance(reference, str) else (None, None)
        )
        if target == kind:
            found.append(f"{kind}/{ident}")
    return found


def _batches(items: list[Place], size: int) -> Iterator[list[Place]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
