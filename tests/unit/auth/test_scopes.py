"""SMART scopes: v1 and v2 forms, what each allows, the intersection a token gets."""

from __future__ import annotations

import pytest

from server.auth.oauth import merged
from server.auth.scopes import Scopes, parse_one
from server.fhir.outcome import FhirError


@pytest.mark.parametrize(
    ("text", "letters"),
    [
        ("system/Slot.read", "rs"),
        ("system/Slot.write", "cud"),
        ("system/Slot.*", "cruds"),
        ("system/*.rs", "rs"),
        ("system/Appointment.cruds", "cruds"),
        ("system/Appointment.cu", "cu"),
        ("system/Patient.s", "s"),
    ],
)
def test_v1_and_v2_forms(text: str, letters: str) -> None:
    scope = parse_one(text)
    assert scope is not None and scope.permissions == frozenset(letters)
    assert scope.text().endswith("." + letters)


@pytest.mark.parametrize(
    "text",
    [
        "patient/*.read",
        "user/Slot.rs",
        "system/Slot",
        "system/Slot.",
        "system/slot.rs",
        "system/Slot.sr",  # v2 letters in cruds order only
        "system/Slot.rr",
        "system/Slot.x",
        "system/Slot.rs?status=free",
        "openid",
        "launch/patient",
        "system/*.readwrite",
    ],
)
def test_invalid_forms_are_not_granted(text: str) -> None:
    assert parse_one(text) is None
    assert Scopes.parse(text).granted == ()


def test_parse_keeps_the_grantable_ones() -> None:
    scopes = Scopes.parse("openid system/Slot.read  patient/*.read system/Appointment.cruds")
    assert scopes.text() == "system/Slot.rs system/Appointment.cruds"


def test_allows_and_require() -> None:
    scopes = Scopes.parse("system/*.rs system/Appointment.cu")
    assert scopes.allows("Schedule", "r") and scopes.allows("Appointment", "c")
    assert not scopes.allows("Schedule", "c") and not scopes.allows("Appointment", "d")
    scopes.require("Slot", "s")
    with pytest.raises(FhirError) as refused:
        scopes.require("Slot", "u")
    assert refused.value.status == 403


@pytest.mark.parametrize(
    ("asked", "allowed", "granted"),
    [
        ("system/Slot.read", "system/*.rs", "system/Slot.rs"),
        ("system/*.read", "system/Slot.cruds", "system/Slot.rs"),
        (
            "system/*.*",
            "system/*.rs system/Appointment.cruds",
            "system/*.rs system/Appointment.cruds",
        ),
        ("system/Appointment.cr", "system/*.rs system/Appointment.cruds", "system/Appointment.cr"),
        ("system/Schedule.cud", "system/*.rs system/Appointment.cruds", ""),
        ("system/Slot.write", "system/Slot.rs", ""),
        ("patient/*.read", "system/*.cruds", ""),
    ],
)
def test_intersection(asked: str, allowed: str, granted: str) -> None:
    assert merged(Scopes.parse(asked).intersect(Scopes.parse(allowed))).text() == granted


def test_intersection_never_grows_beyond_either_side() -> None:
    asked, allowed = Scopes.parse("system/*.cruds"), Scopes.parse("system/Slot.rs")
    result = asked.intersect(allowed)
    assert result.allows("Slot", "r") and not result.allows("Slot", "c")
    assert not result.allows("Schedule", "r")
