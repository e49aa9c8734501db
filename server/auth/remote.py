"""What marks a resource as another publisher's: read here, written only by the server.

The federation consumer (`server.federation.consumer`) stores the Locations, Schedules and Slots
of the publishers the operator registered, each tagged with its source (`meta.tag` of `SOURCE`,
the source's name as code; `meta.source`, its manifest URL). Such a resource is the publisher's
own: no client writes it, an admin neither (`Access.check_write`), and no booking takes its
Slots (`refuse_booking`): only the owner's system books them, at its booking link.

Its owner label is `PUBLISHER`, a pseudo-owner every client may discover (the publisher
published it for everyone) and no client may book or manage.
"""

from __future__ import annotations

from typing import Any

from server.fhir import outcome

SOURCE = "https://fhir.creneau.org/CodeSystem/source"
PUBLISHER = "Source/remote"
SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition"
BOOKING_DEEP_LINK = f"{SMART}/booking-deep-link"
BOOKING_PHONE = f"{SMART}/booking-phone"

Body = dict[str, Any]


def source_of(body: Body | None) -> str | None:
    """The name of the source the resource came from, or None for a resource of ours."""
    for tag in (body or {}).get("meta", {}).get("tag", []):
        if isinstance(tag, dict) and tag.get("system") == SOURCE and tag.get("code"):
            return str(tag["code"])
    return None


def is_remote(body: Body | None) -> bool:
    return source_of(body) is not None


def refuse_booking(slot_id: str, slot: Body | None) -> None:
    """409 for a Slot of another publisher, naming where it is booked."""
    name = source_of(slot)
    if name is None or slot is None:
        return
    link, phone = (
        _value(slot, BOOKING_DEEP_LINK, "valueUrl"),
        _value(slot, BOOKING_PHONE, "valueString"),
    )
    where = "; ".join(
        part
        for part in (
            f"booking-deep-link: {link}" if link else "",
            f"booking-phone: {phone}" if phone else "",
        )
        if part
    )
    publisher = slot.get("meta", {}).get("source") or name
    raise outcome.conflict(
        f"Slot/{slot_id} is published by {publisher}: only its owner's system books it"
        + (f" ({where})" if where else " (it gives no booking link or phone)"),
        code="business-rule",
    )


def _value(body: Body, url: str, key: str) -> str | None:
    for item in body.get("extension", []):
        value = item.get(key) if isinstance(item, dict) and item.get("url") == url else None
        if isinstance(value, str) and value:
            return value
    return None
