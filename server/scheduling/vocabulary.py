"""The codes and extension URLs the scheduling domain reads and writes.

Reused definitions come first (SMART Scheduling Links for capacity and vaccine product); ours live
under CANONICAL and are defined as StructureDefinitions in `profiles/`.
"""

from __future__ import annotations

CANONICAL = "https://fhir.creneau.org"
SLOT_CAPACITY = "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"
VACCINE_PRODUCT = "http://fhir-registry.smarthealthit.org/StructureDefinition/vaccine-product"
HOLD_EXPIRES = f"{CANONICAL}/StructureDefinition/hold-expires"
DOSE_RESERVATION = f"{CANONICAL}/StructureDefinition/dose-reservation"
BOOKING_RECORD = f"{CANONICAL}/StructureDefinition/booking-record"
# Extensions only the server writes: a client's value is replaced by the server's own.
SERVER_MANAGED = frozenset({HOLD_EXPIRES, DOSE_RESERVATION, BOOKING_RECORD})

SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"
SNOMED = "http://snomed.info/sct"
SMART_SERVICE_TYPE = "http://fhir-registry.smarthealthit.org/CodeSystem/service-type"
# Service types that make a slot a vaccination: FHIR service-type 57 "Immunization", SNOMED CT
# 840534001 "SARS-CoV-2 vaccination", SMART Scheduling Links "covid19-immunization".
DEFAULT_VACCINATION_CODES = (
    f"{SERVICE_TYPE}|57",
    f"{SNOMED}|840534001",
    f"{SMART_SERVICE_TYPE}|covid19-immunization",
)
CANCELLATION_REASON = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
# A Slot's status set by the server: `busy-tentative` while live holds take its last seats.
SLOT_STATE = f"{CANONICAL}/CodeSystem/slot-state"
HELD_MARK = {"system": SLOT_STATE, "code": "held", "display": "Held by live holds"}
# Why the server cancelled a hold: it lapsed before it was booked.
HOLD_LAPSED = {
    "coding": [{"system": f"{CANONICAL}/CodeSystem/cancellation-reason", "code": "hold-expired"}],
    "text": "The hold expired before it was booked",
}

# What an Appointment's status means for its slot and its dose.
HOLDING = "pending"  # a hold: takes the slot (and the dose) until it expires
BOOKED = frozenset({"booked", "arrived", "checked-in"})  # takes the slot and the dose
FULFILLED = "fulfilled"  # keeps the slot (the time is spent); the Immunization records the dose
RELEASED = frozenset({"proposed", "cancelled", "noshow", "entered-in-error", "waitlist"})
