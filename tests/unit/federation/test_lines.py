"""Published lines: what a stored Location, Schedule and Slot become in the NDJSON files, valid
FHIR R4B and as the SMART Scheduling Links profiles ask."""

from __future__ import annotations

from typing import Any

from server.federation import lines
from server.scheduling.vocabulary import SLOT_CAPACITY, VACCINE_PRODUCT
from tests.unit.federation.smart_profiles import extension, line_problems

OUR_LABEL = {"system": "https://fhir.creneau.org/CodeSystem/owner", "code": "Organization/o"}
META = {"versionId": "3", "lastUpdated": "2026-03-01T08:00:00.000Z", "security": [OUR_LABEL]}
SCHEDULE: dict[str, Any] = {
    "resourceType": "Schedule",
    "id": "s1",
    "meta": META,
    "active": True,
    "actor": [
        {"reference": "https://creneau.example/fhir/Location/l1"},
        {"reference": "PractitionerRole/r1"},
    ],
    "extension": [
        {
            "url": VACCINE_PRODUCT,
            "valueCoding": {"system": "http://hl7.org/fhir/sid/cvx", "code": "208"},
        },
        {"url": lines.VACCINE_DOSE, "valueInteger": 2},
        {"url": "https://fhir.creneau.org/StructureDefinition/availability", "extension": []},
    ],
}
SLOT: dict[str, Any] = {
    "resourceType": "Slot",
    "id": "x1",
    "meta": META,
    "identifier": [{"system": "urn:x", "value": "1"}],
    "schedule": {"reference": "https://creneau.example/fhir/Schedule/s1"},
    "status": "busy-tentative",
    "start": "2026-03-02T09:00:00.000+01:00",
    "end": "2026-03-02T09:20:00.000+01:00",
    "comment": "https://rdv.example/810000000011",
    "appointmentType": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE"}]
    },
}


def test_a_slot_is_published_with_its_booking_link_and_capacity_and_nothing_of_ours() -> None:
    line = lines.slot_line(SLOT, SCHEDULE, "s1", "busy")
    assert line_problems(line) == []
    assert line["status"] == "busy" and line["schedule"] == {"reference": "Schedule/s1"}
    assert extension(line, "booking-deep-link") == "https://rdv.example/810000000011"
    assert extension(line, "slot-capacity") == 1
    assert extension(line, "booking-phone") is None
    assert line["meta"] == {"lastUpdated": META["lastUpdated"]}
    assert "comment" not in line and "identifier" not in line
    assert line["appointmentType"] == SLOT["appointmentType"]


def test_the_owner_s_booking_link_and_phone_come_from_the_slot_then_its_schedule() -> None:
    on_schedule = {
        **SCHEDULE,
        "extension": [
            {"url": lines.BOOKING_DEEP_LINK, "valueUrl": "https://portal.example/s1"},
            {"url": lines.BOOKING_PHONE, "valueString": "+33140000001"},
        ],
    }
    on_slot = {
        **SLOT,
        "extension": [
            {"url": lines.BOOKING_DEEP_LINK, "valueUrl": "https://portal.example/x1"},
            {"url": SLOT_CAPACITY, "valueInteger": 6},
        ],
    }
    line = lines.slot_line(on_slot, on_schedule, "s1", "free")
    assert line_problems(line) == []
    assert extension(line, "booking-deep-link") == "https://portal.example/x1"
    assert extension(line, "booking-phone") == "+33140000001"
    assert extension(line, "slot-capacity") == 6
    plain = lines.slot_line({**SLOT, "comment": "call us"}, on_schedule, "s1", "free")
    assert extension(plain, "booking-deep-link") == "https://portal.example/s1"
    nothing = lines.slot_line({**SLOT, "comment": "call us"}, SCHEDULE, "s1", "free")
    assert extension(nothing, "booking-deep-link") is None


def test_a_schedule_keeps_its_vaccine_and_names_its_actors_relative() -> None:
    services = [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-type", "code": "57"}]}
    ]
    names = {"Location/l1": "Centre de vaccination"}
    line = lines.schedule_line(SCHEDULE, services, names, "https://creneau.example/fhir")
    assert line_problems(line) == []
    assert line["actor"] == [
        {"reference": "Location/l1", "display": "Centre de vaccination"},
        {"reference": "PractitionerRole/r1"},
    ]
    assert extension(line, "vaccine-product")["code"] == "208"
    assert extension(line, "vaccine-dose") == 2
    assert len(line["extension"]) == 2  # our availability rule stays ours
    assert line["serviceType"] == services and line["active"] is True


def test_a_location_says_its_availability_and_its_department_as_its_state() -> None:
    location = {
        "resourceType": "Location",
        "id": "l1",
        "meta": META,
        "name": "Centre de santé",
        "address": {"line": ["12 rue de Belleville"], "city": "Paris", "postalCode": "75020"},
        "managingOrganization": {"reference": "Organization/o"},
    }
    phones = lines.phones(
        {"telecom": [{"system": "phone", "value": "+33140000001"}, {"value": "?"}]}
    )
    line = lines.location_line(location, phones, available=False)
    assert line_problems(line) == []
    assert extension(line, "has-availability") == "none"
    assert line["address"]["state"] == "FR-75"
    assert line["telecom"] == [{"system": "phone", "value": "+33140000001"}]
    assert "managingOrganization" not in line
    assert extension(lines.location_line(location, phones, True), "has-availability") == "some"
    stated = {**location, "address": {**location["address"], "state": "Île-de-France"}}
    assert lines.location_line(stated, phones, True)["address"]["state"] == "Île-de-France"


def test_the_checks_catch_what_smart_refuses() -> None:
    busy_tentative = {**lines.slot_line(SLOT, SCHEDULE, "s1", "free"), "status": "busy-tentative"}
    assert line_problems(busy_tentative)
    no_phone = lines.location_line(
        {"resourceType": "Location", "id": "l", "name": "x", "address": {"city": "Paris"}}, [], True
    )
    assert len(line_problems(no_phone)) >= 3
    wrong_value = {
        **SLOT,
        "status": "free",
        "extension": [{"url": lines.BOOKING_DEEP_LINK, "valueString": "x"}],
    }
    assert line_problems({k: v for k, v in wrong_value.items() if k != "comment"})
