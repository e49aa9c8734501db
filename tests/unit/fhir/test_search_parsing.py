"""Parsing search parameters into the store-neutral form."""

from __future__ import annotations

import pytest

from server.fhir.outcome import FhirError
from server.fhir.search import (
    ANY_SYSTEM,
    Chain,
    Has,
    Match,
    Parser,
    RangeValue,
    ReferenceValue,
    TokenValue,
)
from server.fhir.searchparams import registry


def parse(resource_type: str, *params: tuple[str, str], strict: bool = False):  # type: ignore[no-untyped-def]
    return Parser(registry(), strict=strict).parse(resource_type, list(params))


def test_every_served_type_has_its_official_parameters() -> None:
    assert {"schedule", "status", "start", "service-type", "_id", "_lastUpdated"} <= set(
        registry().of("Slot")
    )
    assert {"actor", "date", "slot", "patient", "status"} <= set(registry().of("Appointment"))
    assert registry().get("Appointment", "patient").targets == ("Patient",)


def test_token_forms() -> None:
    request = parse("Slot", ("identifier", "a|b,|c,d|,e"))
    assert request.conditions == [
        Match(
            "identifier",
            "token",
            None,
            (
                TokenValue("a", "b"),
                TokenValue(None, "c"),
                TokenValue("d", None),
                TokenValue(ANY_SYSTEM, "e"),
            ),
        )
    ]


def test_escaped_comma_is_not_an_or() -> None:
    match = parse("Patient", ("family", r"a\,b"))
    assert match.conditions[0].values == ("a,b",)  # type: ignore[union-attr]


def test_date_prefix_and_partial_range() -> None:
    (match,) = parse("Slot", ("start", "ge2026-12")).conditions
    assert match.values == (
        RangeValue(
            "ge",
            "2026-12-01T00:00:00.000000",  # type: ignore[union-attr]
            "2026-12-31T23:59:59.999999",
        ),
    )


def test_chain_two_levels_with_type_modifier() -> None:
    (chain,) = parse("Slot", ("schedule.actor:Practitioner.identifier", "S|1")).conditions
    assert chain == Chain(
        "schedule",
        "Schedule",
        Chain("actor", "Practitioner", Match("identifier", "token", None, (TokenValue("S", "1"),))),
    )


def test_has() -> None:
    (has,) = parse("Patient", ("_has:Appointment:patient:status", "booked")).conditions
    assert isinstance(has, Has) and has.source_type == "Appointment"


def test_reference_with_type_modifier() -> None:
    (match,) = parse("Appointment", ("actor:Practitioner", "p1")).conditions
    assert match.values == (ReferenceValue("Practitioner", "p1", "Practitioner/p1"),)  # type: ignore[union-attr]


def test_unknown_parameters_lenient_and_strict() -> None:
    assert parse("Slot", ("colour", "blue")).ignored == ["colour"]
    with pytest.raises(FhirError) as error:
        parse("Slot", ("colour", "blue"), strict=True)
    assert error.value.status == 400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("start", "ge2026-13-01"),
        ("_count", "ten"),
        ("_sort", "colour"),
        ("status:exact", "x"),
        ("_include", "Slot"),
        ("_has:Nope:x:y", "1"),
        ("status:missing", "maybe"),
    ],
)
def test_bad_values_are_400(name: str, value: str) -> None:
    with pytest.raises(FhirError) as error:
        parse("Slot", (name, value))
    assert error.value.status == 400


def test_count_is_capped() -> None:
    assert parse("Slot", ("_count", "5000")).count == 1000
