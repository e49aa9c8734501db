"""The stat tags of a write (see `tags`), from the resource and the places it names.

Run by the scheduling rules on every write of every path, on the body as it will be stored
(after the access labels and the booking rules):

- An Appointment counts on the day it starts (Europe/Paris), in the department of its Schedule's
  place (its slot's Schedule: the Location actor, else a PractitionerRole's or a Practitioner's
  address; with no slot, its own participants, looked at the same way), for its service type and
  its Schedule's vaccine (the SMART Scheduling Links `vaccine-product`). It counts as booked
  (booked, arrived, checked-in), cancelled (only once booked: a hold released or lapsed is no
  cancelled appointment), noshow or fulfilled; proposed, pending, waitlist and entered-in-error
  ones count for nothing.
- A completed Immunization counts as a dose administered on the day it was given, where it was
  given (its location, else its performer), for its vaccine.
- A completed SupplyDelivery counts its doses as delivered on its occurrence day (else the day
  it was first recorded) at its destination (else its receiver), for its item.

The department and the vaccine come from the places, read by key; they are carried from the
previous version when it names the same places, so cancelling, or booking a hold, reads nothing.
They are the places' as they were at the write: a Location's new address counts from the next
appointment written, not backwards.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from server.fhir.values import parse_instant
from server.stats import places, tags
from server.stats.tags import DAY, DEPARTMENT, DOSES, MEASURE, NONE, SERVICE_TYPE, VACCINE
from server.store.base import Reader

Body = dict[str, Any]
Sources = Callable[[Body, str], tuple[str, ...]]
PARIS = ZoneInfo("Europe/Paris")
VACCINE_PRODUCT = "http://fhir-registry.smarthealthit.org/StructureDefinition/vaccine-product"
HL7_SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"
APPOINTMENT_MEASURES = {
    "booked": tags.BOOKED,
    "arrived": tags.BOOKED,
    "checked-in": tags.BOOKED,
    "cancelled": tags.CANCELLED,
    "noshow": tags.NOSHOW,
    "fulfilled": tags.FULFILLED,
}


async def stamp(
    reader: Reader, previous: Body | None, body: Body | None, own_base: str
) -> Body | None:
    """`body` with the stat tags its type calls for (none for the types never counted)."""
    if body is None:
        return None
    kind = body.get("resourceType")
    if kind == "Appointment":
        codes = await _appointment(reader, previous, body, own_base)
    elif kind in ("Immunization", "SupplyDelivery"):
        codes = await _doses(reader, previous, body, own_base)
    else:
        codes = {}
    return tags.with_tags(body, codes)


async def _appointment(
    reader: Reader, previous: Body | None, body: Body, own_base: str
) -> dict[str, str]:
    department, vaccine = await _appointment_place(reader, previous, body, own_base)
    codes = {DEPARTMENT: department, SERVICE_TYPE: service_type(body), VACCINE: vaccine}
    day, measure = day_of(body.get("start")), appointment_measure(previous, body)
    return codes | {DAY: day, MEASURE: measure} if day and measure else codes


def appointment_measure(previous: Body | None, body: Body) -> str | None:
    measure = APPOINTMENT_MEASURES.get(body.get("status", ""))
    if measure == tags.CANCELLED and tags.of(previous, MEASURE) is None:
        return None  # never counted before: a hold released or lapsed, or created cancelled
    return measure


async def _appointment_place(
    reader: Reader, previous: Body | None, body: Body, own_base: str
) -> tuple[str, str]:
    """(department, vaccine): its slot's Schedule's, else its own participants' (no vaccine)."""
    sources = _appointment_sources(body, own_base)
    carried = _carried(previous, sources, _appointment_sources, own_base)
    if carried is not None:
        return carried
    schedule = await _schedule(reader, sources, own_base)
    if schedule is not None:
        actors = [places.local(actor, own_base) for actor in schedule.get("actor", [])]
        found = places.by_kind([a for a in actors if a])
        return await places.department(reader, found, own_base), vaccine_of(schedule)
    return await places.department(reader, list(sources), own_base), NONE


def _appointment_sources(body: Body, own_base: str) -> tuple[str, ...]:
    """What an Appointment's place is read from: its slots, else its participants' places."""
    slots = [places.local(s, own_base) for s in body.get("slot", [])]
    if any(slots):
        return tuple(s for s in slots if s)
    actors = [places.local(p.get("actor"), own_base) for p in body.get("participant", [])]
    return tuple(places.by_kind([a for a in actors if a]))


def _carried(
    previous: Body | None, sources: tuple[str, ...], sources_of: Sources, own_base: str
) -> tuple[str, str] | None:
    """The previous version's department and vaccine, if it names the same places."""
    if previous is None or sources_of(previous, own_base) != sources:
        return None
    department, vaccine = tags.of(previous, DEPARTMENT), tags.of(previous, VACCINE)
    return (department, vaccine) if department and vaccine else None


async def _schedule(reader: Reader, sources: tuple[str, ...], own_base: str) -> Body | None:
    """The Schedule of the first slot, if the sources are slots."""
    if not sources or not sources[0].startswith("Slot/"):
        return None
    slot = await places.read(reader, sources[0])
    schedule = places.local((slot or {}).get("schedule"), own_base)
    return await places.read(reader, schedule) if schedule else None


def vaccine_of(schedule: Body) -> str:
    for item in schedule.get("extension", []):
        if isinstance(item, dict) and item.get("url") == VACCINE_PRODUCT:
            return coding_key(item.get("valueCoding"))
    return NONE


def service_type(body: Body) -> str:
    """The service type's HL7 `service-type` coding if it has one, else its first coding."""
    codings = [
        coding
        for concept in body.get("serviceType", [])
        if isinstance(concept, dict)
        for coding in concept.get("coding", [])
        if isinstance(coding, dict)
    ]
    preferred = [c for c in codings if c.get("system") == HL7_SERVICE_TYPE]
    keys = [coding_key(c) for c in preferred + codings]
    return next((k for k in keys if k != NONE), NONE)


def coding_key(coding: Any) -> str:
    """ "system|code", as the dose ledger names a vaccine; NONE for no code."""
    if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
        return NONE
    system = coding.get("system")
    return f"{system if isinstance(system, str) else ''}|{coding['code']}"


def day_of(value: Any) -> str | None:
    """The day (YYYY-MM-DD) of an instant in Europe/Paris, or of a full date; else None."""
    moment = parse_instant(value)
    if moment is not None:
        return moment.astimezone(PARIS).date().isoformat()
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            return None
    return None


async def _doses(
    reader: Reader, previous: Body | None, body: Body, own_base: str
) -> dict[str, str]:
    sources = _dose_sources(body, own_base)
    carried = _carried(previous, sources, _dose_sources, own_base)
    department = carried[0] if carried else await places.department(reader, list(sources), own_base)
    codes = {DEPARTMENT: department, SERVICE_TYPE: NONE, VACCINE: _dose_vaccine(body)}
    if body.get("status") != "completed":
        return codes
    if body["resourceType"] == "Immunization":
        day = day_of(body.get("occurrenceDateTime")) or day_of(body.get("recorded"))
        return codes | {DAY: day, MEASURE: tags.ADMINISTERED} if day else codes
    doses = _whole(body.get("suppliedItem", {}).get("quantity", {}).get("value"))
    day = _delivery_day(previous, body)
    if doses is None or day is None:
        return codes
    return codes | {DAY: day, MEASURE: tags.DELIVERED, DOSES: doses}


def _dose_sources(body: Body, own_base: str) -> tuple[str, ...]:
    """Where doses are counted, in the dose ledger's order: a delivery's destination, then its
    receivers; an Immunization's location, then its performers."""
    if body.get("resourceType") == "SupplyDelivery":
        named = [body.get("destination"), *body.get("receiver", [])]
    else:
        performers = body.get("performer", [])
        named = [body.get("location"), *(p.get("actor") for p in performers if isinstance(p, dict))]
    found = [places.local(reference, own_base) for reference in named]
    return tuple(f for f in found if f)


def _dose_vaccine(body: Body) -> str:
    if body.get("resourceType") == "SupplyDelivery":
        concept = body.get("suppliedItem", {}).get("itemCodeableConcept", {})
    else:
        concept = body.get("vaccineCode", {})
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    keys = [coding_key(c) for c in codings]
    return next((k for k in keys if k != NONE), NONE)


def _whole(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(int(value)) if value >= 0 and value == int(value) else None


def _delivery_day(previous: Body | None, body: Body) -> str | None:
    """Its occurrence day, else the day it was first counted (kept from version to version:
    `meta.lastUpdated` is the write's)."""
    occurrence = body.get("occurrenceDateTime") or body.get("occurrencePeriod", {}).get("start")
    recorded = body.get("meta", {}).get("lastUpdated")
    return day_of(occurrence) or tags.of(previous, DAY) or day_of(recorded)
