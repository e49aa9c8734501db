"""How a group's figure is published: the sum of its shown cells, "< threshold" when the whole
group counts fewer, partial when some of its cells were withheld; deliveries never withheld."""

from __future__ import annotations

from datetime import date

from server.stats import tags
from server.stats.figures import RESERVED, Figure, Table, grouping
from server.stats.inquiry import Inquiry

ASKED = Inquiry(date(2026, 5, 1), date(2026, 5, 2), ("department",))


def test_a_figure_is_its_shown_cells_or_suppressed() -> None:
    table = Table(ASKED, threshold=10)
    assert table.value(tags.BOOKED, Figure(total=9, shown=0)) == "< 10"
    assert table.value(tags.BOOKED, Figure(total=0, shown=0)) == 0
    assert table.value(tags.BOOKED, Figure(total=25, shown=18)) == 18  # 7 withheld
    assert table.value(tags.BOOKED, Figure(total=12, shown=0)) == 0  # two cells of 6
    assert table.value(tags.DELIVERED, Figure(total=6, shown=6)) == 6


def test_partial_figures_are_named() -> None:
    table = Table(ASKED, threshold=10)
    figures = {
        tags.BOOKED: Figure(25, 18),
        tags.CANCELLED: Figure(4, 0),  # suppressed, not partial
        RESERVED: Figure(18, 18),
    }
    assert table.partial(figures) == [tags.BOOKED]


def test_the_total_sums_the_groups_shown_cells() -> None:
    table = Table(ASKED, threshold=10)
    table.groups = {("75",): {tags.BOOKED: Figure(25, 18)}, ("69",): {tags.BOOKED: Figure(4, 0)}}
    total = table.total()
    assert (total[tags.BOOKED].total, total[tags.BOOKED].shown) == (29, 18)
    assert [codes for codes, _ in table.ordered()] == [("69",), ("75",)]


def test_the_store_groups_by_the_measure_and_the_vaccine_too() -> None:
    assert grouping(ASKED) == (tags.DEPARTMENT, tags.MEASURE, tags.VACCINE)
    by_vaccine = Inquiry(ASKED.first, ASKED.last, ("vaccine", "day"))
    assert grouping(by_vaccine) == (tags.VACCINE, tags.DAY, tags.MEASURE)
