"""FHIR invariants (the error-severity constraints of the official definitions) and the two
business rules on `start`/`end`: a resource breaking one is 422, issue code `invariant` naming
the constraint and the element, and nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.fhir.invariants import Constraint, invariants, short_circuit
from tests.factories import (
    FHIR_JSON,
    create,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    participants,
    ref,
)

START, END = "2030-01-07T09:00:00Z", "2030-01-07T09:15:00Z"
EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"


async def history_size(client: httpx.AsyncClient) -> int:
    response = await client.get("/fhir/_history?_count=1000")
    assert response.status_code == 200
    return len(response.json().get("entry", []))


def appointment(**extra: Any) -> dict[str, Any]:
    """A booked Appointment without slots (Appointment.slot is optional); `name=None` leaves
    that element out."""
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": START,
        "end": END,
        "participant": participants("Patient/p1"),
        **extra,
    }
    return {k: v for k, v in body.items() if v is not None}


def invariant_issues(response: httpx.Response) -> list[tuple[str, str]]:
    """(diagnostics, expression) of each issue, all of code `invariant`."""
    assert response.status_code == 422, response.text
    issues = response.json()["issue"]
    assert all(issue["code"] == "invariant" for issue in issues), issues
    return [(issue["diagnostics"], *issue["expression"]) for issue in issues]


BROKEN: list[tuple[str, dict[str, Any], str, str, str]] = [
    (
        "app-2",
        appointment(status="proposed", end=None),
        "app-2",
        "Either start and end are specified, or neither",
        "Appointment",
    ),
    (
        "app-3",
        appointment(start=None, end=None),
        "app-3",
        "Only proposed or cancelled appointments can be missing start/end dates",
        "Appointment",
    ),
    (
        "app-4",
        appointment(cancelationReason={"text": "Changed my mind"}),
        "app-4",
        "Cancelation reason is only used for appointments that have been cancelled, or no-show",
        "Appointment",
    ),
    (
        "app-1",
        appointment(participant=[{"status": "accepted"}]),
        "app-1",
        "Either the type or actor on the participant SHALL be specified",
        "Appointment.participant[0]",
    ),
    (
        "end-before-start",
        appointment(end="2030-01-07T08:45:00Z"),
        "creneau-app-1",
        "Appointment.end must be after Appointment.start",
        "Appointment",
    ),
    (
        "per-1",
        appointment(requestedPeriod=[{"start": "2030-01-08", "end": "2030-01-07"}]),
        "per-1",
        "If present, start SHALL have a lower value than end",
        "Appointment.requestedPeriod[0]",
    ),
    (
        "ext-1",
        appointment(extension=[{"url": "https://creneau.example/x"}]),
        "ext-1",
        "Must have either extensions or value[x], not both",
        "Appointment.extension[0]",
    ),
    (
        "ref-1",
        appointment(participant=[{"actor": {"reference": "#nobody"}, "status": "accepted"}]),
        "ref-1",
        "SHALL have a contained resource if a local reference is provided",
        "Appointment.participant[0].actor",
    ),
]


@pytest.mark.parametrize(
    ("resource", "key", "human", "expression"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
async def test_appointment_breaking_an_invariant_is_422_naming_it(
    client: httpx.AsyncClient, resource: dict[str, Any], key: str, human: str, expression: str
) -> None:
    before = await history_size(client)
    posted = await client.post("/fhir/Appointment", json=resource, headers=FHIR_JSON)
    assert invariant_issues(posted) == [(f"Constraint {key} failed: {human}", expression)]
    put = await client.put("/fhir/Appointment/a1", json={**resource, "id": "a1"}, headers=FHIR_JSON)
    assert invariant_issues(put) == [(f"Constraint {key} failed: {human}", expression)]
    assert await history_size(client) == before
    assert (await client.get("/fhir/Appointment/a1")).status_code == 404


async def schedule_ref(client: httpx.AsyncClient) -> str:
    practitioner = await create(client, make_practitioner())
    return ref(await create(client, make_schedule(ref(practitioner))))


@pytest.mark.parametrize("minutes", [-15, 0], ids=["end-before-start", "end-at-start"])
async def test_slot_not_ending_after_its_start_is_422(
    client: httpx.AsyncClient, minutes: int
) -> None:
    schedule = await schedule_ref(client)
    before = await history_size(client)
    slot = make_slot(schedule, minutes=minutes)
    posted = await client.post("/fhir/Slot", json=slot, headers=FHIR_JSON)
    assert invariant_issues(posted) == [
        ("Constraint creneau-slot-1 failed: Slot.end must be after Slot.start", "Slot")
    ]
    put = await client.put("/fhir/Slot/s1", json={**slot, "id": "s1"}, headers=FHIR_JSON)
    assert put.status_code == 422, put.text
    assert await history_size(client) == before
    assert (await client.get("/fhir/Slot")).json()["total"] == 0


async def test_period_ending_before_its_start_is_422_in_any_type(
    client: httpx.AsyncClient,
) -> None:
    practitioner = await create(client, make_practitioner())
    before = await history_size(client)
    backwards = {"start": "2030-02-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"}
    schedule = make_schedule(ref(practitioner), planningHorizon=backwards)
    posted = await client.post("/fhir/Schedule", json=schedule, headers=FHIR_JSON)
    assert invariant_issues(posted) == [
        (
            "Constraint per-1 failed: If present, start SHALL have a lower value than end",
            "Schedule.planningHorizon",
        )
    ]
    qualified = {
        **make_practitioner(rpps="810000000099"),
        "qualification": [{"code": {"text": "MD"}}, {"code": {"text": "PhD"}, "period": backwards}],
    }
    posted = await client.post("/fhir/Practitioner", json=qualified, headers=FHIR_JSON)
    assert [e for _, e in invariant_issues(posted)] == ["Practitioner.qualification[1].period"]
    assert await history_size(client) == before


async def test_several_broken_invariants_are_all_named(client: httpx.AsyncClient) -> None:
    organization = {
        "resourceType": "Organization",
        "telecom": [{"system": "phone", "value": "0102030405", "use": "home"}],
        "extension": [{"url": "https://creneau.example/x"}],
    }
    posted = await client.post("/fhir/Organization", json=organization, headers=FHIR_JSON)
    found = invariant_issues(posted)
    assert sorted((diagnostics.split()[1], expression) for diagnostics, expression in found) == [
        ("ext-1", "Organization.extension[0]"),
        ("org-1", "Organization"),
        ("org-3", "Organization.telecom[0]"),
    ]


async def test_valid_resources_are_accepted(client: httpx.AsyncClient) -> None:
    """The controls: the same kinds of bodies, valid, are stored; an Appointment on a slot may
    leave out start and end, which the server fills in from the slot (app-3 then holds)."""
    await create(client, appointment())
    await create(client, appointment(status="proposed", start=None, end=None))
    await create(
        client,
        appointment(
            status="cancelled",
            cancelationReason={"text": "Changed my mind"},
            requestedPeriod=[{"start": "2030-01-07", "end": "2030-01-07T18:00:00+01:00"}],
            extension=[{"url": "https://creneau.example/x", "valueString": "y"}],
        ),
    )
    schedule = await schedule_ref(client)
    slot = await create(client, make_slot(schedule))
    booked = await create(
        client, appointment(slot=[{"reference": ref(slot)}], start=None, end=None)
    )
    assert (booked["start"], booked["end"]) == (slot["start"], slot["end"])
    practitioner = await create(client, make_practitioner(rpps="810000000098"))
    horizon = {"start": "2030-01-01T00:00:00Z", "end": "2030-02-01T00:00:00Z"}
    await create(client, make_schedule(ref(practitioner), planningHorizon=horizon))
    await create(client, {**make_patient(), "contact": [{"name": {"family": "Durand"}}]})


# The evaluator itself, without HTTP


def test_an_evaluator_failure_is_not_a_refusal() -> None:
    """fhirpathpy raising on an odd input leaves the constraint unevaluated, never a 500."""
    raising = Constraint("t-1", "test", "start.noSuchFunction()", "Period")
    assert raising.holds({"start": "2030-01-01"}, "Period", {"resourceType": "Schedule"})


def official_examples() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]


def test_fast_paths_give_what_fhirpathpy_gives() -> None:
    """Skipping a constraint that reads nothing the node has, or settling `a or b` on `a`, gives
    the full evaluation's answer, on the official examples and on broken variants of them."""
    resources = official_examples()
    resources += [dict(r, contained=[{"resourceType": "Patient", "id": "x"}]) for r in resources]
    resources += [case[1] for case in BROKEN]
    table = invariants()
    checked = 0
    for resource in resources:
        for path, base, node, _ in table.nodes(resource):
            for constraint in table.constraints.get(path, ()):
                full = constraint.evaluate(node, base, resource) != [False]
                assert constraint.holds(node, base, resource) == full, (constraint.key, node)
                checked += 1
    assert checked > 300


def test_or_and_implies_are_split_only_at_the_top_level() -> None:
    assert short_circuit("a.exists() or (b or c)") == ("or", ("a.exists()", "(b or c)"))
    assert short_circuit("a implies (b or 'x or y' = c)") == (
        "implies",
        ("a", "(b or 'x or y' = c)"),
    )
    assert short_circuit("a or b xor c") == (None, ())
    assert short_circuit("a or b implies c") == (None, ())
    assert short_circuit("path.exists() xor searchParam.exists()") == (None, ())
