"""What an Appointment takes, read from its body alone: the slots it occupies, whether it is a
live hold, whether it reserves a vaccine dose. Pure functions; the rules compare the claim of the
previous version with the claim of the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.fhir.values import parse_instant, split_reference
from server.scheduling.vocabulary import BOOKED, DOSE_RESERVATION, FULFILLED, HOLD_EXPIRES, HOLDING


@dataclass(frozen=True)
class Claim:
    slots: frozenset[str]  # Slot ids
    holding: bool  # a live hold (pending, not expired)
    booked: bool  # booked, arrived or checked-in
    fulfilled: bool

    @property
    def takes_slots(self) -> bool:
        return self.holding or self.booked or self.fulfilled

    @property
    def takes_dose(self) -> bool:
        return self.holding or self.booked


NOTHING = Claim(frozenset(), False, False, False)


def claim_of(body: dict[str, Any] | None, now: datetime, own_base: str) -> Claim:
    if body is None:
        return NOTHING
    status = body.get("status")
    expires = hold_expiry(body)
    return Claim(
        slots=frozenset(slot_ids(body, own_base)),
        holding=status == HOLDING and expires is not None and expires > now,
        booked=status in BOOKED,
        fulfilled=status == FULFILLED,
    )


def slot_ids(body: dict[str, Any], own_base: str) -> list[str]:
    ids = []
    for slot in body.get("slot", []):
        reference = slot.get("reference") if isinstance(slot, dict) else None
        kind, slot_id = (
            split_reference(reference, own_base) if isinstance(reference, str) else (None, None)
        )
        if kind == "Slot" and slot_id:
            ids.append(slot_id)
    return ids


def extension(body: dict[str, Any], url: str) -> dict[str, Any] | None:
    for item in body.get("extension", []):
        if isinstance(item, dict) and item.get("url") == url:
            return item
    return None


def hold_expiry(body: dict[str, Any]) -> datetime | None:
    item = extension(body, HOLD_EXPIRES)
    return parse_instant(item.get("valueInstant")) if item else None


def dose_reservation(body: dict[str, Any]) -> tuple[str, str] | None:
    """(place reference, vaccine "system|code") the appointment reserves a dose of, if any."""
    item = extension(body, DOSE_RESERVATION)
    if item is None:
        return None
    parts = {part.get("url"): part for part in item.get("extension", [])}
    place = parts.get("place", {}).get("valueReference", {}).get("reference")
    coding = parts.get("vaccine", {}).get("valueCoding", {})
    if not place or not coding.get("code"):
        return None
    return place, f"{coding.get('system', '')}|{coding['code']}"


def patients(body: dict[str, Any], own_base: str) -> list[str]:
    """The Patient references among the participants' actors."""
    found = []
    for participant in body.get("participant", []):
        reference = participant.get("actor", {}).get("reference")
        if isinstance(reference, str) and split_reference(reference, own_base)[0] == "Patient":
            found.append(reference)
    return found
