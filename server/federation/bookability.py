"""Whether a published Slot is `free` or `busy`: the booking rules, as far as a Slot and its
Schedule tell them, and the dose ledger.

A Slot is published `free` only if a booking could take it now: stored `free`, in the future,
within its Schedule's planning horizon, its Schedule active, and, for a vaccination, a dose of
the Schedule's vaccine on hand at its place (delivered, less administered, reserved and held).
A place with no dose publishes no free vaccination slot. A Slot stored `busy` or
`busy-tentative` (its last seats held) is published `busy`; one the owner took off
(`busy-unavailable`, `entered-in-error`) or whose Schedule is switched off is not offered at
all (None): a snapshot leaves it out, a list of changes publishes it `busy`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from server.scheduling import ledger, slots
from server.scheduling.policy import Policy
from server.store.base import Reader, Version

OFFERED = ("free", "busy", "busy-tentative")

Body = dict[str, Any]


class Bookability:
    """The decisions of one publication request; each place's dose balance read once."""

    def __init__(self, reader: Reader, policy: Policy, own_base: str, now: datetime) -> None:
        self.reader = reader
        self.policy = policy
        self.own_base = own_base
        self.now = now
        self._doses: dict[tuple[str, str], bool] = {}

    async def status(self, slot: Version, schedule: Body) -> str | None:
        """`free`, `busy`, or None when the slot is not offered at all."""
        body = slot.body or {}
        if body.get("status") not in OFFERED or schedule.get("active") is False:
            return None
        if body.get("status") != "free" or slots.not_bookable(slot, schedule, self.now):
            return "busy"
        if not self.is_vaccination(body, schedule):
            return "free"
        return "free" if await self.doses_for(schedule) else "busy"

    def is_vaccination(self, slot: Body, schedule: Body) -> bool:
        return self.policy.is_vaccination(
            slot.get("serviceType") or schedule.get("serviceType", [])
        )

    async def doses_for(self, schedule: Body) -> bool:
        """Whether a dose of the Schedule's vaccine is on hand at its place (none when the
        Schedule names no vaccine or no place: no dose could be reserved)."""
        place, vaccine = ledger.place_of(schedule, self.own_base), ledger.vaccine_of(schedule)
        if place is None or vaccine is None:
            return False
        wanted = (place, ledger.vaccine_key(vaccine))
        if wanted not in self._doses:
            balances = await ledger.balances(self.reader, place, self.now, self.own_base)
            balance = balances.get(wanted[1])
            self._doses[wanted] = balance is not None and balance.available > 0
        return self._doses[wanted]
