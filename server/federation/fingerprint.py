"""What the published data is as of: a cheap fingerprint of the store, for `ETag`,
`Last-Modified` and `If-None-Match`.

Each type the publication reads from (the Slots, Schedules and Locations, the phones of
Organizations and PractitionerRoles, what moves a dose balance: deliveries, Immunizations,
Appointments, and the grants, which are `Basic`) is summed up by its newest version in the
history, one index read each: any write of any of them changes the fingerprint. So does time,
in steps of `max_age` seconds, since Slots leave the publication as they start.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from server.auth.access import Access
from server.fhir.values import parse_instant
from server.store.base import Store

TYPES = (
    "Slot",
    "Schedule",
    "Location",
    "Organization",
    "PractitionerRole",
    "SupplyDelivery",
    "Immunization",
    "Appointment",
    "Basic",
)


@dataclass(frozen=True)
class Fingerprint:
    digest: str
    modified: datetime  # the newest write, or the start of the current step if later


async def of(store: Store, now: datetime, max_age: int) -> Fingerprint:
    step = int(now.timestamp()) // max_age
    newest = datetime.fromtimestamp(step * max_age, UTC)
    seen = [str(step)]
    for resource_type in TYPES:
        found = await store.history(resource_type, None, since=None, count=1, cursor=None)
        for version in found.versions:
            seen.append(f"{version.type}/{version.id}/{version.version}")
            written = parse_instant(version.last_updated)
            newest = max(newest, written) if written is not None else newest
    digest = hashlib.sha256("\n".join(seen).encode()).hexdigest()[:32]
    return Fingerprint(digest, newest)


def etag(fingerprint: Fingerprint, *parts: str) -> str:
    """A weak ETag of this data for one reader and one file (`parts`)."""
    key = "\n".join((fingerprint.digest, *parts))
    return f'W/"{hashlib.sha256(key.encode()).hexdigest()[:32]}"'


def reader_of(access: Access) -> str:
    """What tells one reader's publication from another's: whom it may discover, for which
    audiences, with which scopes."""
    if access.admin:
        return "admin"
    audiences = sorted(f"{o}:{','.join(sorted(a))}" for o, a in access.acts_for.items())
    return "\n".join(
        (
            ",".join(sorted(access.discover)),
            ",".join(sorted(access.manage)),
            ";".join(audiences),
            access.caller.scopes.text(),
        )
    )
