"""Lapsed holds, cancelled by the server.

A hold stops counting the instant it lapses (`claims`: its seat and its dose are free for any
booking at once), whether or not anything is written. What other clients read must follow too:
while a hold lives its slot may read `busy-tentative`, and once it lapses the slot must read
`free` again, with nobody asking. So every worker sweeps, every `hold_sweep_seconds`: it finds the
pending Appointments whose `hold-expires` is past (one index range, `Appointment?status=pending&
hold-expires=lt[now]`, a batch at a time) and cancels each in its own transaction, with the
reason that the hold expired; the scheduling rules then settle its slots and release its tallies,
as for any cancel. Workers sweeping at once do not collide: a hold already cancelled by another
is left as it is (on MongoDB the second writer is run again and finds it cancelled).

Each lapse is audited like any write, by the server's own client (`SERVER_CLIENT`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from server.audit.events import Action
from server.audit.trail import Trail
from server.auth.access import Access
from server.auth.caller import Caller
from server.auth.scopes import Scopes
from server.fhir import outcome
from server.fhir.search import Parser
from server.fhir.searchparams import registry
from server.fhir.values import format_instant
from server.limits import Limits
from server.scheduling.claims import hold_expiry
from server.scheduling.policy import Policy
from server.scheduling.retry import atomically
from server.scheduling.rules import SchedulingRules
from server.scheduling.vocabulary import HOLD_LAPSED, HOLDING
from server.store import searching, writes
from server.store.base import Store, Transaction

log = logging.getLogger(__name__)
SERVER_CLIENT = "creneau-server"
BATCH = 100  # lapsed holds looked at per sweep round


def server_rules(policy: Policy, own_base: str, limits: Limits) -> SchedulingRules:
    """The rules the server writes by, as its own admin client, its writes audited."""
    caller = Caller(SERVER_CLIENT, Scopes.parse("system/*.cruds"), admin=True)
    trail = Trail(Action("operation", "lapse-holds"), caller, own_base, policy.now)
    return SchedulingRules(policy, Access(caller), own_base, trail, limits=limits)


async def lapse_due(store: Store, rules: SchedulingRules) -> int:
    """Cancel the holds lapsed by now, a batch at most; how many were cancelled."""
    now = rules.policy.now()
    query = [
        ("status", HOLDING),
        ("hold-expires", f"lt{format_instant(now)}"),
        ("_count", str(BATCH)),
    ]
    request = Parser(registry(), strict=True, own_base=rules.own_base).parse("Appointment", query)
    request.total = "none"
    found = (await searching.search(store, request, rules.own_base)).page.versions
    cancelled = 0
    for version in found:
        try:
            cancelled += await atomically(store, _lapse(rules, version.id, now), rules.trail)
        except outcome.FhirError as error:  # a concurrent change won: the next round sees it
            log.info("hold %s not cancelled yet: %s", version.id, error.issues[0].diagnostics)
    return cancelled


def _lapse(
    rules: SchedulingRules, appointment_id: str, now: datetime
) -> Callable[[Transaction], Awaitable[int]]:
    async def work(tx: Transaction) -> int:
        current = await tx.current("Appointment", appointment_id)
        body = current.body if current is not None else None
        expires = hold_expiry(body) if body else None
        if body is None or body.get("status") != HOLDING or expires is None or expires > now:
            return 0  # booked, cancelled or renewed meanwhile
        lapsed = {**body, "status": "cancelled", "cancelationReason": HOLD_LAPSED}
        await writes.update(tx, lapsed, appointment_id, own_base=rules.own_base, rules=rules)
        return 1

    return work


async def sweep(store: Store, rules: SchedulingRules, every: float) -> None:
    """Cancel lapsed holds every `every` seconds, for ever (a task of each worker)."""
    while True:
        await asyncio.sleep(every)
        try:
            while await lapse_due(store, rules) == BATCH:
                pass
        except Exception:  # the store away for a while: the next round tries again
            log.exception("the sweep of lapsed holds failed")
