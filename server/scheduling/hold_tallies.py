"""Live holds, counted without listing Appointments.

A hold lives until its `hold-expires` instant, then lapses without any write, so what it holds
cannot be a tally that something takes back when it lapses. Instead each hold adds one to a tally
named after what it holds *and when it ends*:

    holds|dose|<place>|<expiry>|<vaccine>    the dose a vaccination hold keeps
    holds|client|<client id>|<expiry>|       a hold on slots, against its client's cap

The scheduling rules move these tallies with every Appointment version, in its transaction, from
what the previous version held to what the next one holds (as the dose ledger's tallies), on every
path: `$hold`, `$book`, `$cancel`, a REST write, a Bundle entry. The live holds of a place or a
client are the tallies whose expiry is still ahead: one index range over the keys after now. Its
size is the number of holds that end after now (each made less than the hold time ago), never the
number of pending Appointments or of lapsed holds, whose tallies are left behind and never read.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.auth import labels
from server.fhir import outcome
from server.fhir.values import format_instant, parse_instant
from server.scheduling.claims import dose_reservation, hold_expiry, slot_ids
from server.scheduling.vocabulary import HOLDING
from server.store.base import Reader, Transaction

Body = dict[str, Any]
DOSE, CLIENT = "dose", "client"
# Sorts after the `|` that ends every key's expiry: a key whose expiry is exactly now is not read.
AFTER_EXPIRY = "~"


@dataclass(frozen=True, order=True)
class _Tally:
    kind: str  # DOSE or CLIENT
    owner: str  # the place, or the client id
    expiry: str  # the hold's `hold-expires`, as `format_instant` writes it (sorts as it runs)
    detail: str = ""  # the vaccine, for a dose

    @property
    def prefix(self) -> str:
        return prefix(self.kind, self.owner)

    @property
    def name(self) -> str:
        return f"{self.prefix}{self.expiry}|{self.detail}"


def prefix(kind: str, owner: str) -> str:
    """`holds|<kind>|<owner>|`, `%` and `|` escaped in the owner so that no prefix holds another."""
    escaped = owner.replace("%", "%25").replace("|", "%7C")
    return f"holds|{kind}|{escaped}|"


def _held(body: Body | None, own_base: str) -> Counter[_Tally]:
    """The hold tallies this Appointment version counts in: none unless it is a hold."""
    expires = hold_expiry(body) if body and body.get("status") == HOLDING else None
    if body is None or expires is None:
        return Counter()
    expiry = format_instant(expires)
    held: Counter[_Tally] = Counter()
    reservation = dose_reservation(body)
    if reservation is not None:
        place, vaccine = reservation
        held[_Tally(DOSE, place, expiry, vaccine)] += 1
    if slot_ids(body, own_base):
        for client in labels.clients(body):
            held[_Tally(CLIENT, client, expiry)] += 1
    return held


async def record(
    tx: Transaction,
    previous: Body | None,
    body: Body | None,
    now: datetime,
    own_base: str,
    per_client: int,
) -> None:
    """Move the hold tallies from what `previous` held to what `body` holds; refuse (429) a new
    hold of a client that already has `per_client` live holds on slots."""
    before, after = _held(previous, own_base), _held(body, own_base)
    for tally in sorted(set(before) | set(after)):
        delta = after[tally] - before[tally]
        if delta > 0 and tally.kind == CLIENT:
            await _check_room(tx, tally.owner, now, per_client)
        if delta:
            await tx.tally(tally.name, delta)


async def doses_held(reader: Reader, place: str, now: datetime) -> Counter[str]:
    """Doses kept by live holds at the place, per vaccine "system|code"."""
    held: Counter[str] = Counter()
    for rest, count in (await _live(reader, prefix(DOSE, place), now)).items():
        held[rest.partition("|")[2]] += count
    return held


async def _check_room(tx: Transaction, client: str, now: datetime, per_client: int) -> None:
    """The guard makes two concurrent new holds of one client conflict (on MongoDB), so that
    they cannot both take its last place."""
    await tx.guard(prefix(CLIENT, client))
    live = await _live(tx, prefix(CLIENT, client), now)
    if sum(live.values()) < per_client:
        return
    first_end = parse_instant(min(live).partition("|")[0])
    wait = math.ceil((first_end - now).total_seconds()) if first_end else 1
    raise outcome.FhirError(
        429,
        [
            outcome.Issue(
                "throttled",
                f"Client {client} already holds {per_client} slots, the most it may hold at "
                "once (limit holds_per_client): book or cancel one of its holds, or wait for "
                "one to lapse",
            )
        ],
        {"Retry-After": str(max(wait, 1))},
    )


async def _live(reader: Reader, tally_prefix: str, now: datetime) -> dict[str, int]:
    """The tallies under the prefix whose expiry is after now, by the rest of their name
    (`<expiry>|<detail>`); those at zero (holds booked or cancelled) left out."""
    found = await reader.tallies_after(tally_prefix, format_instant(now) + AFTER_EXPIRY)
    return {name[len(tally_prefix) :]: count for name, count in found.items() if count}
