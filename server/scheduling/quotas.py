"""Daily booking quotas: an owner may cap how many bookings an app makes a day in its schedules.

Counted in a tally (`quota|client|owner|day`, UTC days) written in the booking's own transaction:
on SQLite writers are serialized, on MongoDB two bookings adding to the same tally conflict and
one is run again, so no interleaving books past the quota. A cancellation gives nothing back:
the quota caps bookings made, as a rate.
"""

from __future__ import annotations

from datetime import datetime

from server.auth.access import Access
from server.fhir import outcome
from server.store.base import Transaction


def key(client_id: str, owner: str, day: str) -> str:
    return f"quota|{client_id}|{owner}|{day}"


async def count(tx: Transaction, access: Access, owner_refs: frozenset[str], now: datetime) -> None:
    """Count one booking against each quota the appointment's owners set for this client;
    429 past any of them. The owner's own clients are not capped."""
    if access.may_manage(owner_refs):
        return
    day = now.date().isoformat()
    for owner in sorted(owner_refs & set(access.quotas)):
        name = key(access.client_id, owner, day)
        await tx.tally(name, 1)
        made = (await tx.tallies(name)).get(name, 0)
        if made > access.quotas[owner]:
            raise outcome.FhirError(
                429,
                [
                    outcome.Issue(
                        "throttled",
                        f"Client {access.client_id} has made its {access.quotas[owner]} "
                        f"bookings of the day in {owner}'s schedules",
                    )
                ],
            )
