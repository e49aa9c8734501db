"""The terms of a hold: a `pending` Appointment keeps its slots (and its dose) for a time the
server fixes, for the one client that made it.

- How long: `hold-expires` is written once, when the Appointment becomes `pending` (which the
  status machine lets happen once: nothing goes back to `pending`), and is server-managed, so no
  later write of any path (PUT, PATCH, a Bundle entry, `$hold` again) moves it. A hold is never
  renewed; a lapsed one can still be booked, if its slots are free.
- Whose: a hold is its client's (the client label on the Appointment): only that client may
  hold it again or book it. The others get 404 if they may not see it, as for any hidden
  resource, and 403 if they may (the schedule's owners' clients), who may still cancel it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from server.auth import labels
from server.auth.access import Access, forbidden
from server.fhir import outcome
from server.fhir.values import format_instant
from server.scheduling.claims import hold_expiry
from server.scheduling.vocabulary import BOOKED, HOLD_EXPIRES, HOLDING

Body = dict[str, Any]
KEEPS_THE_HOLD = frozenset({HOLDING, *BOOKED})


def expiry(previous: Body | None, now: datetime, hold: timedelta) -> Body | None:
    """The `hold-expires` extension of an Appointment that becomes a hold now; None for one that
    already was a hold (it keeps the expiry it was given)."""
    if previous is not None and previous.get("status") == HOLDING:
        return None
    return {"url": HOLD_EXPIRES, "valueInstant": format_instant(now + hold)}


def check_holder(access: Access, previous: Body | None, body: Body) -> None:
    """Only the client that made a hold may keep it a hold or book it."""
    if previous is None or previous.get("status") != HOLDING:
        return
    if body.get("status") not in KEEPS_THE_HOLD or access.client_id in labels.clients(previous):
        return
    appointment = f"Appointment/{previous.get('id')}"
    if not access.can_read("Appointment", previous):
        raise outcome.not_found(f"{appointment} not found")
    raise forbidden(
        f"{appointment} is a hold of another client: only the client that made it may book it"
    )


def check_live(appointment_id: str, body: Body, now: datetime) -> None:
    """`$hold` of a stored hold: a live one stays as it is, a lapsed one is not held again."""
    expires = hold_expiry(body)
    if body.get("status") == HOLDING and (expires is None or expires <= now):
        lapsed = format_instant(expires) if expires else "an unknown time"
        raise outcome.conflict(
            f"Appointment/{appointment_id} was held until {lapsed}: a hold is not renewed; "
            "book it ($book) while its slot is free, or hold the slot again",
            code="business-rule",
        )
