"""The stat tags' pure parts: what a service type, a day, a measure are; how our tags replace a
client's."""

from __future__ import annotations

from server.stats import tags
from server.stats.stamping import appointment_measure, day_of, service_type
from server.stats.tags import MEASURE, with_tags

HL7 = "http://terminology.hl7.org/CodeSystem/service-type"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def test_the_service_type_prefers_the_hl7_coding() -> None:
    sas_slot = {
        "serviceType": [
            {"coding": [{"system": ACT, "code": "AMB"}]},
            {"coding": [{"system": HL7, "code": "124", "display": "General Practice"}]},
        ]
    }
    assert service_type(sas_slot) == f"{HL7}|124"
    assert service_type({"serviceType": [{"coding": [{"system": ACT, "code": "AMB"}]}]}) == (
        f"{ACT}|AMB"
    )
    assert service_type({"serviceType": [{"text": "Vaccination"}]}) == tags.NONE
    assert service_type({}) == tags.NONE


def test_the_day_is_the_paris_one() -> None:
    assert day_of("2026-03-01T22:30:00Z") == "2026-03-01"  # 23:30 in Paris, winter
    assert day_of("2026-07-01T22:30:00Z") == "2026-07-02"  # 00:30 in Paris, summer
    assert day_of("2026-07-01T23:30:00-04:00") == "2026-07-02"
    assert day_of("2026-07-01") == "2026-07-01"
    assert day_of("2026-07") is None
    assert day_of("2026-02-30") is None
    assert day_of(None) is None


def test_a_cancellation_counts_only_once_booked() -> None:
    booked = with_tags({"status": "booked"}, {MEASURE: tags.BOOKED})
    assert appointment_measure(None, {"status": "booked"}) == tags.BOOKED
    assert appointment_measure(booked, {"status": "checked-in"}) == tags.BOOKED
    assert appointment_measure(booked, {"status": "cancelled"}) == tags.CANCELLED
    assert appointment_measure({"status": "pending"}, {"status": "cancelled"}) is None
    assert appointment_measure(None, {"status": "cancelled"}) is None
    assert appointment_measure(None, {"status": "proposed"}) is None
    assert appointment_measure(booked, {"status": "noshow"}) == tags.NOSHOW


def test_our_tags_replace_the_clients_and_keep_the_others() -> None:
    body = {
        "meta": {
            "versionId": "2",
            "tag": [{"system": tags.DEPARTMENT, "code": "13"}, {"system": "urn:x", "code": "a"}],
        }
    }
    stamped = with_tags(body, {tags.DEPARTMENT: "75"})
    assert stamped["meta"] == {
        "versionId": "2",
        "tag": [{"system": "urn:x", "code": "a"}, {"system": tags.DEPARTMENT, "code": "75"}],
    }
    assert tags.of(stamped, tags.DEPARTMENT) == "75"
    assert with_tags({"meta": {"tag": [{"system": tags.DAY, "code": "x"}]}}, {}) == {"meta": {}}
    untouched = {"resourceType": "Patient"}
    assert with_tags(untouched, {}) is untouched
