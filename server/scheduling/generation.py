"""Slots from a Schedule's availability rules: `$generate-slots`, also run when the rules change.

Existing Slots of the Schedule (any status, booked ones included) are never touched: a planned
slot that equals or overlaps one of them is skipped, so running it twice creates nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from server.fhir.values import format_instant
from server.scheduling import availability
from server.scheduling.queries import find_all
from server.store import writes
from server.store.base import Transaction, Version

LONGEST_SLOT = timedelta(days=1)


@dataclass(frozen=True)
class Generated:
    created: int
    skipped: int


async def generate(
    tx: Transaction,
    schedule: Version,
    own_base: str,
    rules: writes.WriteRules,
    now: datetime,
    until: datetime | None = None,
) -> Generated:
    """Create the Slots the rules describe from now to their horizon (or to `until`); `skipped`
    counts the described slots that were already there."""
    body = schedule.body or {}
    parsed = availability.parse_rules(body)
    if not parsed:
        return Generated(0, 0)
    reference = f"Schedule/{schedule.id}"
    since = format_instant(now - LONGEST_SLOT)  # Slot has no `end` search parameter
    existing = await find_all(
        tx, own_base, "Slot", [("schedule", reference), ("start", f"gt{since}")]
    )
    bodies = [v.body or {} for v in existing]
    planned = availability.plan_slots(body, parsed, bodies, now, reference, horizon_end=until)
    everything = availability.plan_slots(body, parsed, [], now, reference, horizon_end=until)
    for slot in planned:
        await writes.create(tx, slot, own_base=own_base, rules=rules)
    return Generated(len(planned), len(everything) - len(planned))
