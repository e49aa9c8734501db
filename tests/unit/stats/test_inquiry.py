"""What `/stats/appointments` accepts, and what it refuses (400)."""

from __future__ import annotations

from datetime import date

import pytest

from server.fhir.outcome import FhirError
from server.stats.inquiry import Inquiry, parse

WINDOW = [("from", "2026-05-01"), ("to", "2026-05-31")]


def test_group_by_is_repeated_or_comma_separated_and_filters_are_kept() -> None:
    asked = parse(
        [*WINDOW, ("group-by", "department, day"), ("group-by", "vaccine"), ("vaccine", "none")]
    )
    assert asked == Inquiry(
        date(2026, 5, 1),
        date(2026, 5, 31),
        ("department", "day", "vaccine"),
        (("vaccine", "none"),),
    )
    assert parse([*WINDOW, ("group-by", "")]).group_by == ()


def test_a_window_of_366_days_is_the_longest() -> None:
    assert parse([("from", "2024-01-01"), ("to", "2024-12-31")]).last == date(2024, 12, 31)
    with pytest.raises(FhirError) as refused:
        parse([("from", "2024-01-01"), ("to", "2025-01-01")])
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "params",
    [
        [("from", "2026-05-01"), ("from", "2026-05-02"), ("to", "2026-05-31")],
        [("from", "2026-5-1"), ("to", "2026-05-31")],
        [("from", "2026-05-01T00:00"), ("to", "2026-05-31")],
        [*WINDOW, ("service-type", "")],
        [*WINDOW, ("department", "x" * 300)],
        [*WINDOW, ("department", "75"), ("department", "69")],
        [*WINDOW, ("_count", "10")],
    ],
)
def test_wrong_inputs_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(FhirError) as refused:
        parse(params)
    assert refused.value.status == 400
