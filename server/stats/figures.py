"""The published figures of an inquiry: computed by the store, small cells withheld.

The unit of counting is the *cell*: one day, one department, one service type, one vaccine, one
measure. The store counts the cells (`server.store.base.Tabulation`); a cell of fewer than the
threshold (`CRENEAU_STATS_THRESHOLD`, 10 by default) is withheld. Every figure published is the
sum of the shown cells of its group, whatever the grouping, the filters or the window, so no
difference of published figures (a total minus the other groups, one window minus a shorter
one, a department minus its service types) can reveal a withheld cell. Where some of a group's
cells were withheld its figure is `partial`, a lower bound; where the whole group counts fewer
than the threshold it is suppressed, shown as "< 10".

The measures: appointments booked (booked, arrived, checked-in), cancelled (once booked),
noshow and fulfilled, by the day they start; doses delivered (SupplyDelivery quantities, by the
day delivered: counts of doses, not of people, never withheld), reserved (by the booked
vaccination appointments: their cells are the booked ones of a vaccine, so withheld alike) and
administered (completed Immunizations). Doses have no service type: grouped by service type,
they count under none.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.stats import tags
from server.stats.inquiry import DIMENSIONS, Inquiry
from server.store.base import Store, Tabulated, Tabulation

RESERVED = "doses-reserved"
MEASURES = (
    tags.BOOKED,
    tags.CANCELLED,
    tags.NOSHOW,
    tags.FULFILLED,
    tags.DELIVERED,
    RESERVED,
    tags.ADMINISTERED,
)
NEVER_WITHHELD = frozenset({tags.DELIVERED})
COUNTED = ("Appointment", "Immunization")
DELIVERIES = ("SupplyDelivery",)


@dataclass
class Figure:
    total: int = 0  # everything the group counts
    shown: int = 0  # its shown cells only

    def add(self, row: Tabulated) -> None:
        self.total += row.total
        self.shown += row.shown


Codes = tuple[str, ...]


@dataclass
class Table:
    inquiry: Inquiry
    threshold: int
    groups: dict[Codes, dict[str, Figure]] = field(default_factory=dict)

    def floor(self, measure: str) -> int:
        return 0 if measure in NEVER_WITHHELD else self.threshold

    def value(self, measure: str, figure: Figure) -> int | str:
        """The figure as published: the sum of its shown cells, or "< threshold" when the
        whole group counts fewer."""
        if 0 < figure.total < self.floor(measure):
            return f"< {self.threshold}"
        return figure.shown

    def partial(self, figures: dict[str, Figure]) -> list[str]:
        """The measures whose published figure leaves withheld cells out."""
        return [
            m
            for m in MEASURES
            if (f := figures.get(m)) and f.shown < f.total and f.total >= self.floor(m)
        ]

    def total(self) -> dict[str, Figure]:
        summed = {measure: Figure() for measure in MEASURES}
        for figures in self.groups.values():
            for measure, figure in figures.items():
                summed[measure].total += figure.total
                summed[measure].shown += figure.shown
        return summed

    def ordered(self) -> list[tuple[Codes, dict[str, Figure]]]:
        """The groups in code order, `none` last in each dimension."""
        return sorted(self.groups.items(), key=lambda i: [(c == tags.NONE, c) for c in i[0]])


async def compute(store: Store, inquiry: Inquiry, threshold: int) -> Table:
    """Two tabulations, the counted resources and the deliveries (weighted by their doses),
    then each row folded into its group; a booked row of a vaccine is its reserved doses too."""
    counted = await store.tabulate(tabulation(inquiry, COUNTED, floor=threshold))
    deliveries = await store.tabulate(tabulation(inquiry, DELIVERIES, weight=tags.DOSES))
    table, width = Table(inquiry, threshold), len(inquiry.group_by)
    vaccine_at = grouping(inquiry).index(tags.VACCINE)
    for row in counted + deliveries:
        figures = table.groups.setdefault(row.codes[:width], {})
        measure = row.codes[width]
        figures.setdefault(measure, Figure()).add(row)
        if measure == tags.BOOKED and row.codes[vaccine_at] != tags.NONE:
            figures.setdefault(RESERVED, Figure()).add(row)
    return table


def grouping(inquiry: Inquiry) -> tuple[str, ...]:
    """The systems the store groups by: the asked dimensions, the measure, and the vaccine
    (which tells a reserved dose)."""
    systems = tuple(DIMENSIONS[name] for name in inquiry.group_by)
    if tags.VACCINE in systems:
        return (*systems, tags.MEASURE)
    return (*systems, tags.MEASURE, tags.VACCINE)


def tabulation(
    inquiry: Inquiry, types: tuple[str, ...], *, weight: str | None = None, floor: int = 0
) -> Tabulation:
    return Tabulation(
        types=types,
        span=tags.DAY,
        low=inquiry.first.isoformat(),
        high=inquiry.last.isoformat(),
        cells=tags.CELL,
        groups=grouping(inquiry),
        where=tuple((DIMENSIONS[name], code) for name, code in inquiry.where),
        weight=weight,
        floor=floor,
    )
