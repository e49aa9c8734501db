"""The SAS shape an availability rule gives its generated Slots."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from server.fhir.outcome import FhirError
from server.scheduling.availability import URL, parse_rules, plan_slots

SAS_SLOT = "http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
ROUTINE = {"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE"}


def schedule(*shape: dict[str, Any]) -> dict[str, Any]:
    hours = {
        "url": "availableTime",
        "extension": [
            {"url": "daysOfWeek", "valueCode": "mon"},
            {"url": "availableStartTime", "valueTime": "09:00:00"},
            {"url": "availableEndTime", "valueTime": "10:00:00"},
        ],
    }
    duration = {"url": "duration", "valueDuration": {"value": 30, "code": "min"}}
    rule = {"url": URL, "extension": [hours, duration, *shape]}
    return {"resourceType": "Schedule", "active": True, "extension": [rule]}


def generated(body: dict[str, Any]) -> list[dict[str, Any]]:
    rules = parse_rules(body)
    monday = datetime(2026, 1, 4, tzinfo=UTC)
    return plan_slots(
        body, rules, [], monday, "Schedule/1", horizon_end=datetime(2026, 1, 6, tzinfo=UTC)
    )


def test_the_shape_parts_are_written_on_each_slot() -> None:
    body = schedule(
        {"url": "audience", "valueCode": "PUBLIC"},
        {"url": "audience", "valueCode": "PRO"},
        {"url": "appointmentType", "valueCoding": ROUTINE},
        {"url": "bookingUrl", "valueUrl": "https://rdv.example/dr"},
        {"url": "slotProfile", "valueCanonical": SAS_SLOT},
    )
    slots = generated(body)
    assert [s["start"] for s in slots] == [
        "2026-01-05T09:00:00.000+01:00",
        "2026-01-05T09:30:00.000+01:00",
    ]
    for slot in slots:
        assert slot["meta"] == {
            "profile": [SAS_SLOT],
            "security": [
                {"system": TYPE_CRENEAU, "code": "PUBLIC"},
                {"system": TYPE_CRENEAU, "code": "PRO"},
            ],
        }
        assert slot["appointmentType"] == {"coding": [ROUTINE]}
        assert slot["comment"] == "https://rdv.example/dr"


def test_a_rule_without_shape_gives_plain_slots() -> None:
    [slot, _] = generated(schedule())
    assert "meta" not in slot and "comment" not in slot and "appointmentType" not in slot


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ({"url": "audience", "valueCode": "VIP"}, "unknown audience"),
        ({"url": "audience", "valueString": "PRO"}, "needs a valueCode"),
        ({"url": "bookingUrl", "valueUrl": ""}, "needs a valueUrl"),
        ({"url": "appointmentType", "valueCode": "ROUTINE"}, "needs a valueCoding"),
    ],
)
def test_a_malformed_shape_part_is_refused_where_it_is(part: dict[str, Any], message: str) -> None:
    with pytest.raises(FhirError) as refused:
        parse_rules(schedule(part))
    [issue] = refused.value.issues
    assert message in issue.diagnostics
    assert issue.expression == ("Schedule.extension[0].extension[2]",)


def test_a_repeated_booking_url_is_refused() -> None:
    twice = [{"url": "bookingUrl", "valueUrl": f"https://rdv.example/{n}"} for n in (1, 2)]
    with pytest.raises(FhirError) as refused:
        parse_rules(schedule(*twice))
    assert refused.value.issues[0].expression == ("Schedule.extension[0].extension[3]",)
