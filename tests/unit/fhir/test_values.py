"""Normal forms: partial dates as ranges, precision of numbers, references, strings."""

from __future__ import annotations

import pytest

from server.fhir.values import date_range, normalize_string, number, split_reference


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", "2024-01-01T00:00:00.000000", "2024-12-31T23:59:59.999999"),
        ("2024-02", "2024-02-01T00:00:00.000000", "2024-02-29T23:59:59.999999"),
        ("2023-12-31", "2023-12-31T00:00:00.000000", "2023-12-31T23:59:59.999999"),
        ("2024-03-01T10:00+01:00", "2024-03-01T09:00:00.000000", "2024-03-01T09:00:59.999999"),
        ("2024-03-01T10:00:00.25Z", "2024-03-01T10:00:00.250000", "2024-03-01T10:00:00.250000"),
    ],
)
def test_partial_dates_cover_their_whole_precision(text: str, low: str, high: str) -> None:
    assert date_range(text) == (low, high)


@pytest.mark.parametrize("text", ["2024-13", "2024-02-30", "tomorrow", "2024-1-1", ""])
def test_not_a_date(text: str) -> None:
    assert date_range(text) is None


def test_number_precision_gives_the_range() -> None:
    assert number("100") == (100.0, 99.5, 100.5)
    assert number("1.50") == (1.5, 1.495, 1.505)
    assert number("NaN") is None and number("ten") is None


def test_references_relative_ours_and_foreign() -> None:
    assert split_reference("Schedule/a-1") == ("Schedule", "a-1")
    assert split_reference("Slot/x/_history/3") == ("Slot", "x")
    assert split_reference("http://us/fhir/Patient/p", "http://us/fhir") == ("Patient", "p")
    assert split_reference("http://them/fhir/Patient/p", "http://us/fhir") == (None, None)


def test_strings_fold_case_and_accents() -> None:
    assert normalize_string("Élodie LEFÈVRE") == "elodie lefevre"
