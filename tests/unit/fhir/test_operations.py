"""The OperationDefinitions under profiles/operations: valid R4 resources, one per operation, with
the inputs and outputs the scheduling operations take and give."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fhir.resources.R4B.operationdefinition import OperationDefinition

from server.fhir import operations
from server.fhir.resources import SERVED_TYPES

BASE = "https://fhir.creneau.org/OperationDefinition/"
DEFINITIONS = operations.definitions()
IDS = [d["id"] for d in DEFINITIONS]

# id: (resource types, type level, instance level, affectsState)
LEVELS = {
    "appointment-find": (["Appointment"], True, False, False),
    "appointment-hold": (["Appointment"], True, False, True),
    "appointment-book": (["Appointment"], True, False, True),
    "appointment-cancel": (["Appointment"], False, True, True),
    "schedule-cancel-appointments": (["Schedule"], False, True, True),
    "doses": (["Location", "Practitioner"], False, True, False),
    "schedule-generate-slots": (["Schedule"], False, True, True),
    "grant": (["Organization", "Practitioner"], False, True, True),
    "revoke": (["Organization", "Practitioner"], False, True, True),
    "grants": (["Organization", "Practitioner"], False, True, False),
    "validate": (list(SERVED_TYPES), True, True, False),
    "export": (["Practitioner"], False, True, False),
}
SYSTEM_LEVEL = ("export",)  # also invoked on the base
# id: the parameters as (use, name, min, max, type)
PARAMETERS = {
    "appointment-find": [
        ("in", "start", 1, "1", "dateTime"),
        ("in", "end", 0, "1", "dateTime"),
        ("in", "service-type", 0, "*", "string"),
        ("in", "visit-type", 0, "*", "string"),
        ("in", "specialty", 0, "*", "string"),
        ("in", "practitioner", 0, "*", "string"),
        ("in", "location", 0, "*", "string"),
        ("in", "location-reference", 0, "*", "Reference"),
        ("in", "organization", 0, "*", "string"),
        ("in", "address-postalcode", 0, "1", "string"),
        ("in", "location-string", 0, "*", "string"),
        ("in", "patient-reference", 0, "*", "Reference"),
        ("in", "patient-resource", 0, "*", "Patient"),
        ("in", "reason", 0, "*", "string"),
        ("in", "coverage", 0, "*", "Coverage"),
        ("in", "referral-identifier", 0, "1", "Identifier"),
        ("in", "timing", 0, "1", "Timing"),
        ("in", "insurance-reference", 0, "1", "Reference"),
        ("in", "_include", 0, "*", "string"),
        ("in", "_count", 0, "1", "integer"),
        ("in", "_total", 0, "1", "code"),
        ("in", "_cursor", 0, "1", "string"),
        ("out", "return", 1, "1", "Bundle"),
    ],
    "appointment-hold": [
        ("in", "appt-resource", 0, "1", "Appointment"),
        ("in", "appt-id", 0, "1", "string"),
        ("in", "appointment-resource", 0, "1", "Appointment"),
        ("in", "appointment", 0, "1", "Appointment"),
        ("in", "appointment-reference", 0, "1", "Reference"),
        ("in", "slot", 0, "1", "Reference"),
        ("in", "patient-id", 0, "1", "string"),
        ("in", "comment", 0, "1", "string"),
        ("out", "return", 1, "1", "Bundle"),
    ],
    "appointment-book": [
        ("in", "appt-resource", 0, "1", "Appointment"),
        ("in", "appt-id", 0, "1", "string"),
        ("in", "appointment-resource", 0, "1", "Appointment"),
        ("in", "appointment", 0, "1", "Appointment"),
        ("in", "appointment-reference", 0, "1", "Reference"),
        ("in", "cancelled-appt-id", 0, "1", "string"),
        ("in", "patient-id", 0, "1", "string"),
        ("in", "comment", 0, "1", "string"),
        ("out", "return", 1, "1", "Bundle"),
    ],
    "grant": [
        ("in", "client", 1, "1", "string"),
        ("in", "access", 1, "*", "code"),
        ("in", "audience", 0, "*", "code"),
        ("in", "quota", 0, "1", "integer"),
        ("in", "period", 0, "1", "Period"),
        ("out", "return", 1, "1", "Basic"),
    ],
    "revoke": [("in", "client", 1, "1", "string"), ("out", "return", 1, "1", "OperationOutcome")],
    "validate": [
        ("in", "resource", 0, "1", "Resource"),
        ("in", "mode", 0, "1", "code"),
        ("in", "profile", 0, "1", "canonical"),
        ("out", "return", 1, "1", "OperationOutcome"),
    ],
    "grants": [("out", "return", 1, "1", "Bundle")],
    "export": [
        ("in", "_outputFormat", 0, "1", "string"),
        ("in", "_since", 0, "1", "instant"),
        ("in", "_type", 0, "1", "string"),
    ],
    "appointment-cancel": [
        ("in", "reason", 0, "1", "CodeableConcept"),
        ("out", "return", 1, "1", "Appointment"),
    ],
    "schedule-cancel-appointments": [
        ("in", "start", 0, "1", "dateTime"),
        ("in", "end", 0, "1", "dateTime"),
        ("in", "service-type", 0, "*", "string"),
        ("in", "booked-by", 0, "*", "string"),
        ("in", "created-after", 0, "1", "dateTime"),
        ("in", "reason", 1, "1", "string"),
        ("in", "dry-run", 0, "1", "boolean"),
        ("out", "return", 1, "1", "Bundle"),
    ],
    "doses": [
        ("in", "vaccine", 0, "*", "string"),
        ("out", "vaccine", 0, "*", None),
    ],
    "schedule-generate-slots": [
        ("in", "horizon-end", 0, "1", "dateTime"),
        ("out", "created", 1, "1", "integer"),
        ("out", "skipped", 1, "1", "integer"),
    ],
}
SEARCH_TYPES = {
    ("appointment-find", "service-type"): "token",
    ("appointment-find", "visit-type"): "token",
    ("appointment-find", "specialty"): "token",
    ("appointment-find", "location-string"): "string",
    ("appointment-find", "reason"): "token",
    ("appointment-find", "practitioner"): "reference",
    ("appointment-find", "location"): "reference",
    ("appointment-find", "organization"): "reference",
    ("appointment-find", "address-postalcode"): "string",
    ("schedule-cancel-appointments", "service-type"): "token",
    ("doses", "vaccine"): "token",
}
PRIMITIVES = {"boolean", "integer", "decimal", "string", "uri", "code", "date", "dateTime"}


def _definition(definition_id: str) -> dict[str, Any]:
    definition = operations.get(definition_id)
    assert definition is not None, definition_id
    return definition


def _walk(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [q for p in parameters for q in (p, *_walk(p.get("part", [])))]


def test_each_operation_is_defined_once() -> None:
    assert sorted(IDS) == sorted(LEVELS)
    files = sorted(operations.OPERATIONS.glob("*.json"))
    assert [f.stem for f in files] == IDS, "one file per definition, named by its id, in order"
    for key in ("id", "url", "name"):
        assert not [v for v, n in Counter(d[key] for d in DEFINITIONS).items() if n > 1], key
    assert len({d["code"] for d in DEFINITIONS}) == len(DEFINITIONS)


@pytest.mark.parametrize("definition", DEFINITIONS, ids=IDS)
def test_definition_is_a_valid_operation_definition(definition: dict[str, Any]) -> None:
    OperationDefinition.model_validate(definition)
    assert definition["url"] == BASE + definition["id"]
    assert (definition["status"], definition["kind"]) == ("active", "operation")
    assert definition["description"].strip()
    assert definition["system"] is (definition["id"] in SYSTEM_LEVEL)
    # The invariants fhir.resources does not check (opd-1, opd-2, opd-3).
    for parameter in _walk(definition["parameter"]):
        assert ("type" in parameter) != ("part" in parameter), parameter["name"]
        assert "searchType" not in parameter or parameter["type"] == "string", parameter["name"]
        if "targetProfile" in parameter:
            assert parameter["type"] in ("Reference", "canonical"), parameter["name"]
        assert parameter["documentation"].strip(), parameter["name"]


@pytest.mark.parametrize("definition", DEFINITIONS, ids=IDS)
def test_level_and_parameters(definition: dict[str, Any]) -> None:
    resource, type_level, instance_level, affects_state = LEVELS[definition["id"]]
    assert definition["resource"] == resource
    assert (definition["type"], definition["instance"]) == (type_level, instance_level)
    assert definition["affectsState"] is affects_state
    found = [
        (p["use"], p["name"], p["min"], p["max"], p.get("type")) for p in definition["parameter"]
    ]
    assert found == PARAMETERS[definition["id"]]
    search_types = {
        (definition["id"], p["name"]): p["searchType"]
        for p in definition["parameter"]
        if "searchType" in p
    }
    assert search_types == {k: v for k, v in SEARCH_TYPES.items() if k[0] == definition["id"]}


@pytest.mark.parametrize("definition", DEFINITIONS, ids=IDS)
def test_operations_that_change_nothing_can_be_called_with_get(definition: dict[str, Any]) -> None:
    """With GET a client can give the primitive inputs only (FHIR): every input it must give
    is one. Complex ones (IHE's `patient-resource`, `timing`) are for POST."""
    inputs = [p for p in definition["parameter"] if p["use"] == "in" and p["min"] > 0]
    if not definition["affectsState"]:
        assert all(p.get("type") in PRIMITIVES for p in inputs), definition["id"]


def test_the_parts_of_a_doses_answer() -> None:
    (answer,) = [p for p in _definition("doses")["parameter"] if p["use"] == "out"]
    parts = [(p["use"], p["name"], p["min"], p["max"], p["type"]) for p in answer["part"]]
    assert parts == [
        ("out", "code", 1, "1", "Coding"),
        ("out", "delivered", 1, "1", "integer"),
        ("out", "administered", 1, "1", "integer"),
        ("out", "reserved", 1, "1", "integer"),
        ("out", "available", 1, "1", "integer"),
    ]


def test_hold_takes_a_slot_reference_and_says_when_the_hold_ends() -> None:
    hold = {p["name"]: p for p in _definition("appointment-hold")["parameter"]}
    assert hold["slot"]["targetProfile"] == ["http://hl7.org/fhir/StructureDefinition/Slot"]
    expires = "https://fhir.creneau.org/StructureDefinition/hold-expires"
    assert expires in hold["return"]["documentation"]


@pytest.mark.parametrize(
    ("resource_type", "codes"),
    [
        ("Appointment", ["book", "cancel", "find", "hold", "validate"]),
        ("Schedule", ["cancel-appointments", "generate-slots", "validate"]),
        ("Location", ["doses", "validate"]),
        ("Organization", ["grant", "grants", "revoke", "validate"]),
        ("Practitioner", ["doses", "export", "grant", "grants", "revoke", "validate"]),
        ("Patient", ["validate"]),
        ("Slot", ["validate"]),
    ],
)
def test_for_type(resource_type: str, codes: list[str]) -> None:
    assert [d["code"] for d in operations.for_type(resource_type)] == codes


def test_get_by_id() -> None:
    assert _definition("appointment-book")["code"] == "book"
    assert operations.get("nope") is None


def test_operation_definitions_are_not_a_stored_type() -> None:
    """`GET /fhir/OperationDefinition/{id}` is answered from these files; were OperationDefinition
    ever a stored type, that route would hide the stored ones."""
    assert "OperationDefinition" not in SERVED_TYPES
