"""Postal codes to INSEE department codes, Corsica and overseas included."""

from __future__ import annotations

import pytest

from server.stats.departments import of_address, of_postal_code


@pytest.mark.parametrize(
    ("postal_code", "department"),
    [
        ("75020", "75"),
        ("01000", "01"),
        ("95100", "95"),
        ("69 004", "69"),
        ("20000", "2A"),
        ("20190", "2A"),
        ("20200", "2B"),
        ("20620", "2B"),
        ("97100", "971"),
        ("97300", "973"),
        ("97400", "974"),
        ("97600", "976"),
        ("97133", "971"),  # Saint-Barthélemy, within Guadeloupe's codes
    ],
)
def test_a_french_postal_code_names_its_department(postal_code: str, department: str) -> None:
    assert of_postal_code(postal_code) == department


@pytest.mark.parametrize(
    "postal_code", ["98000", "98800", "00100", "96000", "20700", "97700", "7502", "750200", "7502A"]
)
def test_other_codes_name_no_department(postal_code: str) -> None:
    assert of_postal_code(postal_code) is None


def test_an_address_abroad_is_no_department() -> None:
    assert of_address({"postalCode": "10115", "country": "DE"}) is None
    assert of_address({"postalCode": "13001", "country": "France"}) == "13"
    assert of_address({"postalCode": "97400", "country": "RE"}) == "974"
    assert of_address({"postalCode": "13001"}) == "13"
    assert of_address({"city": "Paris"}) is None
    assert of_address("75020") is None
