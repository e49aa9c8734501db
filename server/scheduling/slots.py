"""Whether a Slot can be taken, and the Slot status that follows from what takes it.

A Slot is bookable when it is `free` (or `busy-tentative` by the server's own say, see below),
starts in the future, its Schedule is active and the Schedule's planning horizon (if any) covers
it, and fewer appointments take it than its capacity (the SMART Scheduling Links `slot-capacity`
extension, else 1). Holds take a seat while they live, and an expired hold takes none, whether or
not anything was written since.

What other clients read follows: `busy` when bookings fill the slot, `busy-tentative` when live
holds take its last seats, `free` otherwise. The server marks a `busy-tentative` of its own with
a `meta.tag` (`HELD_MARK`), so that it tells its own from an owner's (an owner's status is left
as it is) and a client cannot forge or drop it. When a hold lapses, the server cancels it
(`expiry`), which settles the slot `free` again; until then the lapsed hold counts for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.auth import remote
from server.fhir import outcome
from server.fhir.values import parse_instant, period_bounds
from server.scheduling.claims import Claim, claim_of
from server.scheduling.queries import find_all
from server.scheduling.vocabulary import HELD_MARK, SLOT_CAPACITY, SLOT_STATE
from server.store import writes
from server.store.base import Reader, Transaction, Version

TAKING_STATUSES = "pending,booked,arrived,checked-in,fulfilled"


@dataclass(frozen=True)
class Occupancy:
    holds: int = 0
    bookings: int = 0  # booked, arrived, checked-in, fulfilled

    @property
    def taken(self) -> int:
        return self.holds + self.bookings


def guard_key(slot_id: str) -> str:
    """The one document every decision on the slot's seats writes: a booking or hold that takes
    one, a release, and the owner's changes that could strand an appointment."""
    return f"Slot/{slot_id}"


def capacity(slot: dict[str, Any]) -> int:
    for item in slot.get("extension", []):
        if item.get("url") == SLOT_CAPACITY and isinstance(item.get("valueInteger"), int):
            return max(int(item["valueInteger"]), 0)
    return 1


def taken_by(claims: list[Claim]) -> Occupancy:
    return Occupancy(
        holds=sum(1 for c in claims if c.holding),
        bookings=sum(1 for c in claims if c.booked or c.fulfilled),
    )


async def occupancy(
    reader: Reader, slot_id: str, now: datetime, own_base: str, *, ignoring: str | None = None
) -> Occupancy:
    """What takes the slot now, leaving out the appointment `ignoring` (the one being written)."""
    takers = await find_all(
        reader, own_base, "Appointment", [("slot", f"Slot/{slot_id}"), ("status", TAKING_STATUSES)]
    )
    return taken_by([claim_of(v.body, now, own_base) for v in takers if v.id != ignoring])


def not_bookable(slot: Version, schedule: dict[str, Any] | None, now: datetime) -> str | None:
    """Why the slot cannot be taken, whoever asks; None if its own state allows it."""
    body = slot.body or {}
    start, end = parse_instant(body.get("start")), parse_instant(body.get("end"))
    if body.get("status") != "free" and not held_by_server(body):
        return f"it is {body.get('status')}"
    if start is None or start <= now:
        return "it has already started"
    if schedule is None:
        return "its Schedule no longer exists"
    if schedule.get("active") is False:
        return "its Schedule is not active"
    try:
        low, high = period_bounds(schedule.get("planningHorizon"))
    except ValueError:
        return "its Schedule's planning horizon cannot be read"
    if (low and start < low) or (high and end and end > high):
        return "it lies outside its Schedule's planning horizon"
    return None


async def take(
    tx: Transaction, slot_id: str, now: datetime, own_base: str, *, appointment_id: str | None
) -> tuple[Version, dict[str, Any]]:
    """Check that the slot can be taken by one more appointment; its (Slot, Schedule) if so."""
    await tx.guard(guard_key(slot_id))
    slot = await tx.current("Slot", slot_id)
    if slot is None or slot.deleted:
        raise slot_gone(slot_id, "it does not exist")
    remote.refuse_booking(slot_id, slot.body)  # another publisher's: booked at its link
    schedule_id = (slot.body or {}).get("schedule", {}).get("reference", "").rpartition("/")[2]
    schedule = await tx.current("Schedule", schedule_id)
    reason = not_bookable(slot, None if schedule is None else schedule.body, now)
    if reason:
        raise slot_gone(slot_id, reason)
    taken = await occupancy(tx, slot_id, now, own_base, ignoring=appointment_id)
    if taken.taken >= capacity(slot.body or {}):
        raise slot_gone(slot_id, "it is already taken" if taken.holds == 0 else "it is on hold")
    return slot, (schedule.body if schedule else None) or {}


def slot_gone(slot_id: str, reason: str) -> outcome.FhirError:
    return outcome.conflict(f"Slot/{slot_id} cannot be booked: {reason}", code="business-rule")


async def settle_status(
    tx: Transaction, slot_id: str, now: datetime, own_base: str, rules: writes.WriteRules
) -> None:
    """After a hold, a booking or a release: `busy` when bookings fill the slot,
    `busy-tentative` (marked as the server's) when live holds take its last seats, `free` when
    neither does. A status the owner set (busy-unavailable, their own busy-tentative) is left as
    it is. `rules` write the Slot as the server (`SchedulingRules.settling`).

    The slot's guard is written first, whatever follows: a release that decides "still free"
    and a booking that decides "now full" read the same seats, and without a common write both
    would commit on MongoDB (a busy slot with a seat free)."""
    await tx.guard(guard_key(slot_id))
    slot = await tx.current("Slot", slot_id)
    if slot is None or slot.deleted or not slot.body:
        return
    status = slot.body.get("status")
    if status not in ("free", "busy") and not held_by_server(slot.body):
        return
    taken = await occupancy(tx, slot_id, now, own_base)
    seats = capacity(slot.body)
    wanted = "busy" if taken.bookings >= seats else "free"
    if wanted == "free" and taken.taken >= seats:
        wanted = "busy-tentative"
    settled = marked({**slot.body, "status": wanted}, wanted == "busy-tentative")
    if settled != slot.body:
        await writes.update(tx, settled, slot_id, own_base=own_base, rules=rules)


def held_by_server(slot: dict[str, Any]) -> bool:
    """Whether the slot is `busy-tentative` by the server's say (its live holds)."""
    return slot.get("status") == "busy-tentative" and any(
        tag.get("system") == SLOT_STATE for tag in slot.get("meta", {}).get("tag", [])
    )


def marked(slot: dict[str, Any], held: bool) -> dict[str, Any]:
    """The slot with the server's held mark, or without it."""
    meta = dict(slot.get("meta", {}))
    tags = [t for t in meta.get("tag", []) if t.get("system") != SLOT_STATE]
    tags += [HELD_MARK] if held else []
    if tags:
        meta["tag"] = tags
    else:
        meta.pop("tag", None)
    return {**slot, "meta": meta}


def as_written_by_client(previous: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any]:
    """A client's Slot write: the held mark stays the server's. A held slot written `free` or
    `busy-tentative` stays held; any other status is the owner's own say."""
    held = previous is not None and held_by_server(previous)
    if held and body.get("status") in ("free", "busy-tentative"):
        return marked({**body, "status": "busy-tentative"}, True)
    return marked(body, False)
