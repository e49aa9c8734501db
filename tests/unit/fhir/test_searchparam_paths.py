"""The search parameters walked directly (plain paths, references of one type, one extension's
value) give what the FHIRPath engine gives, on the HL7 examples and on the shapes we write."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from fhirpathpy import compile as compile_fhirpath

from server.fhir.searchparams import FHIRPATH_MODEL, registry
from server.scheduling.vocabulary import HOLD_EXPIRES

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
APPOINTMENT = {
    "resourceType": "Appointment",
    "id": "a",
    "status": "pending",
    "participant": [
        {"actor": {"reference": "Patient/p"}, "status": "accepted"},
        {"actor": {"reference": "Practitioner/d"}, "status": "accepted"},
        {"actor": {"reference": "Location/l"}, "status": "accepted"},
        {"actor": {"display": "no reference"}, "status": "accepted"},
    ],
    "extension": [
        {"url": HOLD_EXPIRES, "valueInstant": "2026-12-05T08:05:00.000Z"},
        {"url": "https://example.org/other", "valueString": "x"},
    ],
}


WRITTEN = [
    APPOINTMENT,
    {  # the same patient as agent and entity: a union gives it once
        "resourceType": "AuditEvent",
        "agent": [{"who": {"reference": "Patient/p"}, "requestor": True}],
        "entity": [{"what": {"reference": "Patient/p"}}, {"what": {"reference": "Slot/s"}}],
    },
    {"resourceType": "Provenance", "occurredDateTime": "2026-12-04T08:00:00Z"},
    {
        "resourceType": "Patient",
        "telecom": [
            {"system": "phone", "value": "0601020304"},
            {"system": "email", "value": "a@example.org"},
            {"system": "phone", "value": "0102030405", "use": "work"},
        ],
    },
]


def resources() -> list[dict[str, Any]]:
    found = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]
    return [r for r in found if isinstance(r, dict) and "resourceType" in r] + WRITTEN


@pytest.mark.parametrize("resource", resources(), ids=lambda r: r["resourceType"])
def test_walked_parameters_agree_with_fhirpath(resource: dict[str, Any]) -> None:
    walked = [
        p
        for p in registry().of(resource["resourceType"]).values()
        if isinstance(p.evaluate, partial)
    ]
    assert walked
    for param in walked:
        engine = compile_fhirpath(param.expression, model=FHIRPATH_MODEL)
        assert param.values(resource) == engine(resource), param.code


def test_the_fast_shapes_are_used_where_appointments_are_written() -> None:
    appointment = registry().of("Appointment")
    for code in ("patient", "practitioner", "location", "hold-expires"):
        assert isinstance(appointment[code].evaluate, partial), code
    assert appointment["patient"].values(APPOINTMENT) == [{"reference": "Patient/p"}]
    assert appointment["hold-expires"].values(APPOINTMENT) == ["2026-12-05T08:05:00.000Z"]
