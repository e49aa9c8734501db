"""A Slot file, streamed: its Schedules one after the other, each one's future Slots a page at a
time through the store's (schedule, start) index, so that memory holds one page whatever the
number of Slots.

Without `_since`, a file holds the Slots on offer (`free` or `busy`, see `Bookability`) of its
active Schedules. With `_since`, it holds what a client that read the data at `_since` must
change, each Slot in its current published state, one no longer offered (its owner took it off,
its Schedule was switched off, it was deleted) as `busy`:

- every future Slot of a Schedule whose own state may change them all: the Schedule changed
  (switched off or on, its horizon, its booking links), or it offers a vaccine and its place has
  no dose on hand (a dose balance moves without any Slot being written, so these are always
  given again: no client keeps a free one) or had a delivery since;
- every other Slot written since, found through the lastUpdated index (a few per minute);
- every Slot deleted since, as it was before, from the history, newest first, read back only as
  far as `_since`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from server.federation import lines
from server.federation.outputs import Output
from server.federation.snapshot import PAGE, Placed, Snapshot, match
from server.fhir.values import format_instant, parse_instant, split_reference
from server.scheduling import ledger
from server.store.base import Query, Version

OFFERED = "free,busy,busy-tentative"
LONG_AGO = timedelta(days=1)

Body = dict[str, Any]


async def schedules_of(snapshot: Snapshot, output: Output) -> list[Placed]:
    """The Schedules whose Slots the file holds, read before it is streamed."""
    found: list[Placed] = []
    async for page in snapshot.placed():
        found += [p for p in page if output.holds(p.department, p.schedule.id)]
    return found


async def stream(snapshot: Snapshot, placed: list[Placed]) -> AsyncIterator[bytes]:
    """The file's NDJSON, a chunk per page of Slots."""
    if snapshot.since is None:
        for schedule in placed:
            if schedule.body.get("active") is not False:
                async for chunk in _timeline(snapshot, schedule, offered_only=True):
                    yield chunk
        return
    whole = await _changed_as_a_whole(snapshot, placed)
    for schedule in placed:
        if schedule.schedule.id in whole:
            async for chunk in _timeline(snapshot, schedule, offered_only=False):
                yield chunk
    rest = {p.schedule.id: p for p in placed if p.schedule.id not in whole}
    async for chunk in _written_since(snapshot, rest):
        yield chunk
    async for chunk in _deleted_since(snapshot, {p.schedule.id: p for p in placed}):
        yield chunk


async def _timeline(snapshot: Snapshot, placed: Placed, offered_only: bool) -> AsyncIterator[bytes]:
    matches = [
        *snapshot.visible_of(placed.schedule),
        match("Slot", "schedule", f"Schedule/{placed.schedule.id}"),
        match("Slot", "start", f"gt{format_instant(snapshot.now)}"),
    ]
    if offered_only:
        matches.append(match("Slot", "status", OFFERED))
    async for page in snapshot.pages(Query("Slot", matches, count=PAGE)):
        yield b"".join([await _line(snapshot, slot, placed) for slot in page])


async def touched(snapshot: Snapshot, placed: list[Placed]) -> set[str]:
    """With `_since`: the Schedules whose Slots changed since, as the files give them."""
    found = await _changed_as_a_whole(snapshot, placed)
    async for page in _slots_written_since(snapshot):
        found.update(_schedule_id(slot.body, snapshot.own_base) for slot in page)
    async for page in _deletions_since(snapshot):
        found.update(_schedule_id(before.body, snapshot.own_base) for before in page)
    return found


async def _changed_as_a_whole(snapshot: Snapshot, placed: list[Placed]) -> set[str]:
    """The Schedules whose every future Slot is given again (see the module's docstring); all
    of them for a `_since` older than `LONG_AGO`, whose changes are most of the Slots."""
    if snapshot.since is not None and snapshot.since < datetime.now(UTC) - LONG_AGO:
        return {p.schedule.id for p in placed}
    delivered = await _delivered_since(snapshot)
    whole = set()
    for schedule in placed:
        vaccine = ledger.vaccine_of(schedule.body)
        place = ledger.place_of(schedule.body, snapshot.own_base)
        if snapshot.changed(schedule.schedule) or (
            vaccine is not None
            and (place in delivered or not await snapshot.bookability.doses_for(schedule.body))
        ):
            whole.add(schedule.schedule.id)
    return whole


async def _delivered_since(snapshot: Snapshot) -> set[str]:
    """The places that had a vaccine delivery written since (the server's own read)."""
    query = Query(
        "SupplyDelivery", [match("SupplyDelivery", "_lastUpdated", f"sa{snapshot.after}")]
    )
    places: set[str] = set()
    async for page in snapshot.pages(query):
        for delivery in page:
            for place, _ in ledger.delivered(delivery.body, snapshot.own_base):
                places.add(place)
    return places


async def _written_since(snapshot: Snapshot, schedules: dict[str, Placed]) -> AsyncIterator[bytes]:
    """The Slots of these Schedules written since, the caller's access checked on each as a
    search would."""
    if not schedules:
        return
    async for page in _slots_written_since(snapshot):
        found = []
        for slot in page:
            placed = schedules.get(_schedule_id(slot.body, snapshot.own_base))
            if placed is not None and _shown(snapshot, slot.body):
                found.append(await _line(snapshot, slot, placed))
        yield b"".join(found)


async def _slots_written_since(snapshot: Snapshot) -> AsyncIterator[list[Version]]:
    """Every Slot written since, through the lastUpdated index (which is what makes them few);
    the server's own read: the files pass over the Slots of other Schedules and check access."""
    query = Query("Slot", [match("Slot", "_lastUpdated", f"sa{snapshot.after}")], count=PAGE)
    async for page in snapshot.pages(query):
        yield page


async def _deleted_since(snapshot: Snapshot, schedules: dict[str, Placed]) -> AsyncIterator[bytes]:
    """The Slots of these Schedules deleted since, as their last version before, `busy`."""
    async for page in _deletions_since(snapshot):
        found = []
        for before in page:
            placed = schedules.get(_schedule_id(before.body, snapshot.own_base))
            if placed is not None and _shown(snapshot, before.body):
                body = before.body or {}
                found.append(
                    _encoded(lines.slot_line(body, placed.body, placed.schedule.id, "busy"))
                )
        yield b"".join(found)


async def _deletions_since(snapshot: Snapshot) -> AsyncIterator[list[Version]]:
    """The last version before each deletion of a Slot since (the latest one, if it was deleted
    again), a page of the Slot history at a time, newest first, read back only as far as
    `after`."""
    cursor: str | None = None
    while True:
        found = await snapshot.store.history("Slot", None, since=None, count=PAGE, cursor=cursor)
        recent = [v for v in found.versions if snapshot.changed(v)]
        yield [b for v in recent if v.deleted and (b := await _before(snapshot, v)) is not None]
        if len(recent) < len(found.versions) or not found.next_cursor:
            return
        cursor = found.next_cursor


async def _before(snapshot: Snapshot, deleted: Version) -> Version | None:
    """The version before the deletion, if the Slot is still deleted by it."""
    current = await snapshot.store.current("Slot", deleted.id)
    if current is None or current.version != deleted.version:
        return None  # back since, or deleted again: another version gives it
    return await snapshot.store.version("Slot", deleted.id, deleted.version - 1)


async def _line(snapshot: Snapshot, slot: Version, placed: Placed) -> bytes:
    status = await snapshot.bookability.status(slot, placed.body)
    if status is None and snapshot.since is None:
        return b""
    body = slot.body or {}
    return _encoded(lines.slot_line(body, placed.body, placed.schedule.id, status or "busy"))


def _shown(snapshot: Snapshot, body: Body | None) -> bool:
    """Readable by the caller, and still to come."""
    start = parse_instant((body or {}).get("start"))
    return start is not None and start > snapshot.now and snapshot.access.can_read("Slot", body)


def _schedule_id(body: Body | None, own_base: str) -> str:
    reference = (body or {}).get("schedule", {}).get("reference")
    kind, ident = (
        split_reference(reference, own_base) if isinstance(reference, str) else (None, None)
    )
    return (ident or "") if kind == "Schedule" else ""


def _encoded(line: Body) -> bytes:
    return orjson.dumps(line) + b"\n"
