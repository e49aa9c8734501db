"""Planning the scheduling hot paths onto the composite (reference + date) index rows.

When a search names one reference of a `COMPOSITES` pair exactly (`schedule=Schedule/x`) and
bounds its date (`start=ge…&start=lt…`), both stores can seek that reference's time line in one
index range instead of probing every resource the reference matches. The bounds are necessary
conditions implied by the date Matches, which are still checked exactly afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.fhir.indexing import COMPOSITES
from server.fhir.search import Match, RangeValue

Bound = tuple[str, str, str]  # "low" or "high", comparison ("<", "<=", ">", ">="), value


@dataclass(frozen=True)
class CompositePlan:
    name: str
    literal: str
    bounds: tuple[Bound, ...]
    covered: Match  # the reference Match the plan makes redundant


def plan(resource_type: str, matches: list[Match]) -> CompositePlan | None:
    for reference_param, date_param in COMPOSITES.get(resource_type, ()):
        reference = next(
            (
                m
                for m in matches
                if m.param == reference_param
                and m.modifier is None
                and len(m.values) == 1
                and m.values[0].type
                and m.values[0].id
            ),
            None,
        )
        dates = [
            m.values[0]
            for m in matches
            if m.param == date_param and m.modifier is None and len(m.values) == 1
        ]
        bounds = tuple(b for b in map(implied_bound, dates) if b is not None)
        if reference is not None and bounds:
            return CompositePlan(
                f"{reference_param}+{date_param}", reference.values[0].literal, bounds, reference
            )
    return None


def implied_bound(value: RangeValue) -> Bound | None:
    """A necessary condition on a stored (low, high) range that an index can seek on."""
    if value.prefix in ("ge", "eq"):
        return ("high", ">=", value.low)
    if value.prefix in ("gt", "sa"):
        return ("high", ">", value.high)
    if value.prefix in ("lt", "eb"):
        return ("low", "<", value.low)
    if value.prefix == "le":
        return ("low", "<=", value.high)
    return None
