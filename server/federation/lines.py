"""What a Location, a Schedule and a Slot look like once published: one line of an NDJSON file,
in the shape SMART Scheduling Links asks for (`hl7.fhir.uv.ssl`), built from the stored resource.

A published resource keeps its id, its `meta.lastUpdated` and the elements a booking app reads;
it loses what is ours alone (access labels, profiles, our extensions). It gains the SMART
extensions (under `SMART`):

    Location   has-availability   `some` or `none`: a bookable slot in its Schedules, or not
    Schedule   vaccine-product    the vaccine offered (Coding), vaccine-dose (integer) if given
    Slot       booking-deep-link  the Slot's own, else its Schedule's, else a web address in the
                                  Slot's `comment` (the SAS booking link)
               booking-phone      the Slot's own, else its Schedule's
               slot-capacity      its seats (1 unless the Slot says more)

Pure functions: what the store holds in, what is published out.
"""

from __future__ import annotations

from typing import Any

from server.federation import departments
from server.fhir.values import split_reference
from server.scheduling.slots import capacity
from server.scheduling.vocabulary import SLOT_CAPACITY, VACCINE_PRODUCT

SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition"
BOOKING_DEEP_LINK = f"{SMART}/booking-deep-link"
BOOKING_PHONE = f"{SMART}/booking-phone"
VACCINE_DOSE = f"{SMART}/vaccine-dose"
HAS_AVAILABILITY = f"{SMART}/has-availability"
SLOT_ELEMENTS = ("serviceCategory", "serviceType", "specialty", "appointmentType")
SCHEDULE_ELEMENTS = ("identifier", "serviceCategory", "specialty", "planningHorizon", "comment")
LOCATION_ELEMENTS = ("identifier", "status", "name", "description", "type")
WEB = ("https://", "http://")

Body = dict[str, Any]


def slot_line(slot: Body, schedule: Body, schedule_id: str, status: str) -> Body:
    """The Slot as published, `status` free or busy (what `Bookability` decided)."""
    extensions = [*booking(slot, schedule), {"url": SLOT_CAPACITY, "valueInteger": capacity(slot)}]
    line: Body = {"resourceType": "Slot", "id": slot["id"], **_meta(slot)}
    line["extension"] = extensions
    line.update((name, slot[name]) for name in SLOT_ELEMENTS if name in slot)
    line["schedule"] = {"reference": f"Schedule/{schedule_id}"}
    line.update(status=status, start=slot.get("start"), end=slot.get("end"))
    return line


def booking(slot: Body, schedule: Body) -> list[Body]:
    """The booking-deep-link and booking-phone extensions the owner gave, Slot first."""
    link = _value(slot, BOOKING_DEEP_LINK, "valueUrl") or _value(
        schedule, BOOKING_DEEP_LINK, "valueUrl"
    )
    if link is None:
        comment = slot.get("comment")
        if isinstance(comment, str) and comment.startswith(WEB) and len(comment.split()) == 1:
            link = comment
    phone = _value(slot, BOOKING_PHONE, "valueString") or _value(
        schedule, BOOKING_PHONE, "valueString"
    )
    found = [{"url": BOOKING_DEEP_LINK, "valueUrl": link}] if link else []
    return found + ([{"url": BOOKING_PHONE, "valueString": phone}] if phone else [])


def schedule_line(
    schedule: Body, service_types: list[Any], names: dict[str, str], own_base: str
) -> Body:
    """The Schedule as published: `service_types` its own or its slots', `names` the display of
    the actors the publication knows (its Locations)."""
    line: Body = {"resourceType": "Schedule", "id": schedule["id"], **_meta(schedule)}
    extensions = [
        e
        for e in schedule.get("extension", [])
        if (e.get("url") == VACCINE_PRODUCT and isinstance(e.get("valueCoding"), dict))
        or (e.get("url") == VACCINE_DOSE and type(e.get("valueInteger")) is int)
    ]
    if extensions:
        line["extension"] = extensions
    line.update((name, schedule[name]) for name in SCHEDULE_ELEMENTS if name in schedule)
    line["active"] = schedule.get("active") is not False
    line["serviceType"] = service_types
    line["actor"] = [_actor(a, names, own_base) for a in schedule.get("actor", [])]
    return line


def location_line(location: Body, telecom: list[Body], available: bool) -> Body:
    """The Location as published: `telecom` its phones (its own, else its owners'), its address
    naming its department as `state` when it names none."""
    line: Body = {"resourceType": "Location", "id": location["id"], **_meta(location)}
    code = "some" if available else "none"
    line["extension"] = [{"url": HAS_AVAILABILITY, "valueCode": code}]
    line.update((name, location[name]) for name in LOCATION_ELEMENTS if name in location)
    if telecom:
        line["telecom"] = telecom
    address = location.get("address")
    if isinstance(address, dict):
        department = departments.of_location(location)
        if department and not address.get("state"):
            address = {**address, "state": departments.jurisdiction(department)}
        line["address"] = address
    if "position" in location:
        line["position"] = location["position"]
    return line


def phones(resource: Body | None) -> list[Body]:
    """A resource's telecom entries with a system and a value, as SMART asks of a Location."""
    return [
        {"system": t["system"], "value": t["value"]}
        for t in (resource or {}).get("telecom", [])
        if isinstance(t, dict) and isinstance(t.get("system"), str) and t.get("value")
    ]


def _actor(actor: Body, names: dict[str, str], own_base: str) -> Body:
    reference = actor.get("reference")
    kind, ident = (
        split_reference(reference, own_base) if isinstance(reference, str) else (None, None)
    )
    if not kind:
        return dict(actor)
    local = f"{kind}/{ident}"
    display = actor.get("display") or names.get(local)
    return {"reference": local, **({"display": display} if display else {})}


def _meta(resource: Body) -> Body:
    updated = resource.get("meta", {}).get("lastUpdated")
    return {"meta": {"lastUpdated": updated}} if updated else {}


def _value(resource: Body, url: str, key: str) -> str | None:
    for item in resource.get("extension", []):
        value = item.get(key) if item.get("url") == url else None
        if isinstance(value, str) and value:
            return value
    return None
