"""Slots from a Schedule's availability rules: `$generate-slots`, also run when the rules change.

Existing Slots of the Schedule (any status, booked ones included) are never touched: a planned
slot that equals or overlaps one of them is skipped, so running it twice creates nothing more.

What one generation may cost is capped by the server's `Limits` (docs/limits.md): rules asking
for more are refused in the caller's transaction, before any Slot is written. The planning runs
in a worker thread, so that thousands of slots do not hold up the event loop. Up to `BATCH`
Slots are written in the caller's transaction (with the Schedule, when its rules changed); more
are handed to `Later`, which writes them once that transaction has committed, `BATCH` to a
transaction, so that no generation holds the store's write lock for long.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

import anyio.to_thread

from server.audit.trail import Trail
from server.fhir.conformity import Conformity
from server.fhir.values import format_instant
from server.limits import Limits
from server.scheduling import availability
from server.scheduling.queries import find_all
from server.scheduling.retry import atomically
from server.store import writes
from server.store.base import Store, Transaction, Version

LONGEST_SLOT = timedelta(days=1)
BATCH = 500


class GenerationRules(writes.WriteRules, Protocol):
    """The write rules a generation runs under, with the server's caps on what it may cost and
    where to leave large ones (None: written at once)."""

    @property
    def limits(self) -> Limits: ...

    @property
    def later(self) -> Later | None: ...

    @property
    def conformity(self) -> Conformity | None: ...


@dataclass(frozen=True)
class Generated:
    created: int  # planned: with `Later`, some are written after the caller's transaction
    skipped: int


@dataclass(frozen=True)
class _Pending:
    schedule: Version  # the version the slots were planned from
    slots: list[dict[str, Any]]


@dataclass
class Later:
    """Slots planned in a request's transactions, to write once they have committed (`write`).

    A Schedule planned twice (a transaction run again after a conflict) keeps its last plan."""

    pending: dict[str, _Pending] = field(default_factory=dict)

    def add(self, schedule: Version, slots: list[dict[str, Any]]) -> None:
        self.pending[schedule.id] = _Pending(schedule, slots)

    async def write(
        self, store: Store, own_base: str, rules: writes.WriteRules, trail: Trail | None
    ) -> None:
        """Each plan `BATCH` Slots to a transaction, as long as its Schedule is still the
        version planned from (else that newer version's own generation takes over); a Slot
        that another writer has created meanwhile is skipped."""
        pending, self.pending = list(self.pending.values()), {}
        for plan in pending:
            for first in range(0, len(plan.slots), BATCH):
                batch = plan.slots[first : first + BATCH]
                work = partial(_write_batch, plan.schedule, batch, own_base, rules)
                if not await atomically(store, work, trail):
                    break


async def _write_batch(
    schedule: Version,
    batch: list[dict[str, Any]],
    own_base: str,
    rules: writes.WriteRules,
    tx: Transaction,
) -> bool:
    """Write one batch, less the Slots that overlap one written meanwhile; False, writing
    nothing, if the Schedule is no longer the version the batch was planned from."""
    current = await tx.current("Schedule", schedule.id)
    if current is None or current.version != schedule.version:
        return False
    reference = f"Schedule/{schedule.id}"
    await tx.guard(f"Slot?schedule={reference}")
    since = datetime.fromisoformat(batch[0]["start"]) - LONGEST_SLOT
    until = max(datetime.fromisoformat(slot["end"]) for slot in batch)
    window = [("start", f"gt{format_instant(since)}"), ("start", f"lt{format_instant(until)}")]
    existing = await find_all(tx, own_base, "Slot", [("schedule", reference), *window])
    fresh = availability.without_overlaps(batch, [v.body or {} for v in existing])
    if fresh:
        await writes.create_many(tx, fresh, own_base=own_base, rules=rules)
    return True


async def generate(
    tx: Transaction,
    schedule: Version,
    own_base: str,
    rules: GenerationRules,
    now: datetime,
    until: datetime | None = None,
) -> Generated:
    """Create the Slots the rules describe from now to their horizon (or to `until`); `skipped`
    counts the described slots that were already there. More than `BATCH` of them are left to
    the rules' `later`, when they have one."""
    body = schedule.body or {}
    caps = availability.Caps.of(rules.limits)
    parsed = availability.parse_rules(body, caps)
    if not parsed:
        return Generated(0, 0)
    reference = f"Schedule/{schedule.id}"
    since = format_instant(now - LONGEST_SLOT)  # Slot has no `end` search parameter
    existing = await find_all(
        tx, own_base, "Slot", [("schedule", reference), ("start", f"gt{since}")]
    )
    bodies = [v.body or {} for v in existing]
    planning = partial(
        availability.plan, body, parsed, bodies, now, reference, horizon_end=until, caps=caps
    )
    plan = await anyio.to_thread.run_sync(planning)
    if rules.conformity is not None:
        await anyio.to_thread.run_sync(_check_profiles, plan.slots, rules.conformity)
    if rules.later is not None and len(plan.slots) > BATCH:
        rules.later.add(schedule, plan.slots)
    elif plan.slots:
        await writes.create_many(tx, plan.slots, own_base=own_base, rules=rules)
    return Generated(len(plan.slots), plan.skipped)


def _check_profiles(slots: list[dict[str, Any]], conformity: Conformity) -> None:
    """The planned Slots meet the profiles their rule names (`slotProfile`), as any write
    must: one Slot of each shape is checked, as the Slots of one shape differ only in their
    times (422, nothing written, otherwise)."""
    shapes: dict[str, dict[str, Any]] = {}
    for slot in slots:
        shape = {k: v for k, v in slot.items() if k not in ("start", "end")}
        shapes.setdefault(repr(sorted(shape.items())), slot)
    for sample in shapes.values():
        conformity.check(sample)
