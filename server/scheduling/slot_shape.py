"""What an availability rule adds to each Slot it generates beyond its time: the SAS shape.

The SAS aggregator (IG `ans.fhir.fr.sas`) reads Slots that say whom they are for
(`meta.security`, TRE-R314 codes), how they are booked (`appointmentType`, v2-0276 ROUTINE or
WALKIN), where (`comment`: the booking URL) and which profile they meet (`meta.profile`). A rule
says so with its `audience`, `appointmentType`, `bookingUrl` and `slotProfile` parts; the demo
fixtures write their Slots through the same `apply`, so both give one shape.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from server.auth import audiences
from server.fhir.outcome import invalid_one

PARTS = ("audience", "appointmentType", "bookingUrl", "slotProfile")

Part = tuple[str, dict[str, Any]]  # (FHIRPath of a sub-extension, the sub-extension)


@dataclass(frozen=True)
class SlotShape:
    audience: tuple[str, ...] = ()
    appointment_type: dict[str, Any] | None = None  # a Coding
    booking_url: str | None = None
    profiles: tuple[str, ...] = ()


PLAIN = SlotShape()  # a rule without shape parts: the slots carry their time and service only


def parse_shape(parts: dict[str, list[Part]]) -> SlotShape:
    """The shape a rule's parts ask for (each part at most once but audience and slotProfile)."""
    for name in ("appointmentType", "bookingUrl"):
        if len(parts.get(name, [])) > 1:
            raise invalid_one(f"{name} may appear only once", parts[name][1][0])
    kind = _one(parts, "appointmentType", "valueCoding", dict)
    return SlotShape(
        audience=tuple(_audience(part) for part in parts.get("audience", [])),
        appointment_type=kind,
        booking_url=_one(parts, "bookingUrl", "valueUrl", str),
        profiles=tuple(_text(part, "valueCanonical") for part in parts.get("slotProfile", [])),
    )


def apply(slot: dict[str, Any], shape: SlotShape) -> dict[str, Any]:
    """`slot` with the shape's profile, audience, appointment type and booking URL."""
    meta: dict[str, Any] = {}
    if shape.profiles:
        meta["profile"] = list(shape.profiles)
    if shape.audience:
        meta["security"] = [{"system": audiences.TYPE_CRENEAU, "code": a} for a in shape.audience]
    shaped = {"resourceType": slot["resourceType"], **({"meta": meta} if meta else {})}
    shaped.update((k, v) for k, v in slot.items() if k != "resourceType")
    if shape.appointment_type is not None:
        shaped["appointmentType"] = {"coding": [copy.deepcopy(shape.appointment_type)]}
    if shape.booking_url is not None:
        shaped["comment"] = shape.booking_url
    return shaped


def _audience(part: Part) -> str:
    code = _text(part, "valueCode")
    if code not in audiences.CODES:
        raise invalid_one(
            f"unknown audience {code!r}: use {', '.join(sorted(audiences.CODES))}", part[0]
        )
    return code


def _one(parts: dict[str, list[Part]], name: str, key: str, kind: type) -> Any:
    found = parts.get(name, [])
    return _value(found[0], key, kind) if found else None


def _text(part: Part, key: str) -> str:
    value: str = _value(part, key, str)
    return value


def _value(part: Part, key: str, kind: type) -> Any:
    where, extension = part
    value = extension.get(key)
    if not isinstance(value, kind) or not value:
        raise invalid_one(f"{extension['url']} needs a {key}", where)
    return value
