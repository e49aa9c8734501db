"""An app's own identifiers for its Appointments (`Appointment.identifier`), one namespace per
client.

An app gives an identifier so that a repeated `$book` returns the booking it already made rather
than booking twice; and no two of its appointments carry the same one. Both look only among the
appointments of the same client (its `client` access label): another app's identifier of the
same value is another app's business, never found, never refused, never shown.
"""

from __future__ import annotations

from typing import Any

from server.auth import labels
from server.scheduling.queries import find_all
from server.store.base import Transaction, Version


def tokens(body: dict[str, Any]) -> list[str]:
    """The appointment's identifiers as `system|value` search tokens (complete ones only)."""
    found = []
    for identifier in body.get("identifier", []):
        system, value = identifier.get("system"), identifier.get("value")
        if system and value:
            found.append(f"{system}|{value}")
    return found


async def carrying(tx: Transaction, own_base: str, client_id: str, token: str) -> list[Version]:
    """The client's Appointments that carry the identifier. Guarded, so that two concurrent
    writes of the same client and identifier conflict (on MongoDB) or queue (on SQLite)."""
    await tx.guard(f"Appointment?identifier={token}&_security={labels.CLIENT}|{client_id}")
    params = [("identifier", token), ("_security", f"{labels.CLIENT}|{client_id}")]
    return await find_all(tx, own_base, "Appointment", params, limit=5)
