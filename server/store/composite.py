"""Planning the scheduling hot paths onto the composite (reference + status + instant) rows.

When a search names the references of a `Composite` exactly (`schedule=Schedule/x`, or the
schedules a chain resolved to) and bounds its date (`start=ge…&start=lt…`), both stores answer
it from the composite rows alone: for each reference and each status asked (every status of the
required value set when none is), one index range on `low`. The plan covers the reference, the
status and the date Matches: the date conditions are checked exactly on the row's `low` and
`high`, the seek bounds only narrow the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from server.fhir.indexing import COMPOSITES, Composite
from server.fhir.resources import required_bindings
from server.fhir.search import ANY_SYSTEM, Match, RangeValue
from server.fhir.values import LOWEST, stamp

# An instant has seconds: the range its value covers is narrower than this.
INSTANT_WIDTH = timedelta(seconds=1)
MOST_REFERENCES = 1000  # more references than this: the reference index drives instead
Bound = tuple[str, str]  # comparison on `low` (">=", ">", "<", "<="), value


@dataclass(frozen=True)
class CompositePlan:
    name: str
    literals: tuple[str, ...]
    states: tuple[str, ...]
    seek: tuple[Bound, ...]  # on `low`, what the date conditions imply
    dates: tuple[RangeValue, ...]  # checked exactly on the row's (low, high)
    covered: tuple[Match, ...]  # the Matches the plan answers in full


def plan(resource_type: str, matches: list[Match]) -> CompositePlan | None:
    for shape in COMPOSITES.get(resource_type, ()):
        found = _plan(resource_type, shape, matches)
        if found is not None:
            return found
    return None


def _plan(resource_type: str, shape: Composite, matches: list[Match]) -> CompositePlan | None:
    reference = next((m for m in matches if _exact_references(m, shape.reference)), None)
    dates = [m for m in matches if _seekable_date(m, shape.date)]
    seek = tuple(b for m in dates for b in seek_bounds(m.values[0]))
    if reference is None or not seek:
        return None
    state = next((m for m in matches if _plain_codes(m, shape.state)), None)
    states = (
        tuple(sorted({v.code for v in state.values}))
        if state is not None
        else _every_state(resource_type, shape)
    )
    covered = (reference, *dates, *((state,) if state is not None else ()))
    return CompositePlan(
        shape.name,
        tuple(dict.fromkeys(v.literal for v in reference.values)),
        states,
        seek,
        tuple(m.values[0] for m in dates),
        covered,
    )


def _exact_references(match: Match, param: str) -> bool:
    return (
        match.param == param
        and match.modifier is None
        and 0 < len(match.values) <= MOST_REFERENCES
        and all(v.type and v.id for v in match.values)
    )


def _seekable_date(match: Match, param: str) -> bool:
    return (
        match.param == param
        and match.modifier is None
        and len(match.values) == 1
        and match.values[0].prefix not in ("ne", "ap")
    )


def _plain_codes(match: Match, param: str) -> bool:
    """`status=free` or `status=free,busy`: codes any system, as the state column holds them."""
    return (
        match.param == param
        and match.modifier is None
        and all(v.system == ANY_SYSTEM and v.code for v in match.values)
    )


def _every_state(resource_type: str, shape: Composite) -> tuple[str, ...]:
    """The codes the state element (named like its parameter) may take under its required
    binding, and "" for none given."""
    return ("", *sorted(required_bindings().get(f"{resource_type}.{shape.state}", ())))


def window(found: CompositePlan) -> timedelta:
    """How long a time line the plan's ranges span (unbounded: `timedelta.max`)."""
    lower = [value for comparison, value in found.seek if comparison in (">", ">=")]
    upper = [value for comparison, value in found.seek if comparison in ("<", "<=")]
    if not lower or not upper:
        return timedelta.max
    return datetime.fromisoformat(min(upper)) - datetime.fromisoformat(max(lower))


def seek_bounds(value: RangeValue) -> tuple[Bound, ...]:
    """Bounds on a stored instant's `low` that its date condition implies: `high` is less than
    `INSTANT_WIDTH` after `low`, so `high >= x` implies `low > x - INSTANT_WIDTH`."""
    prefix, low, high = value.prefix, value.low, value.high
    if prefix == "eq":
        return ((">", _earlier(low)), ("<=", high))
    if prefix == "ge":
        return ((">", _earlier(low)),)
    if prefix == "gt":
        return ((">", _earlier(high)),)
    if prefix == "lt":
        return (("<", low),)
    if prefix == "le":
        return (("<=", high),)
    if prefix == "sa":
        return ((">", high),)
    if prefix == "eb":
        return (("<", low),)
    return ()


def _earlier(instant: str) -> str:
    try:
        return stamp(datetime.fromisoformat(instant) - INSTANT_WIDTH)
    except (ValueError, OverflowError):
        return LOWEST
