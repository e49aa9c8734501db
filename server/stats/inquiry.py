"""What a client asks the open statistics: a window of days, up to three dimensions to group by,
and codes to keep; checked here, each refusal a 400 OperationOutcome.

    from, to        YYYY-MM-DD, the first and last day (Europe/Paris) counted, at most
                    MAX_DAYS days apart
    group-by        department, service-type, vaccine, day: repeated or comma-separated, at
                    most MAX_GROUP_BY, none twice (none: one group, the whole window)
    department, service-type, vaccine
                    one code each, to count only what carries it (`none` for none)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from server.fhir import outcome
from server.stats import tags

DIMENSIONS = {
    "department": tags.DEPARTMENT,
    "service-type": tags.SERVICE_TYPE,
    "vaccine": tags.VACCINE,
    "day": tags.DAY,
}
FILTERS = ("department", "service-type", "vaccine")
MAX_DAYS = 366
MAX_GROUP_BY = 3
MAX_CODE_CHARS = 256
KNOWN = frozenset({"from", "to", "group-by", *FILTERS})


@dataclass(frozen=True)
class Inquiry:
    first: date
    last: date
    group_by: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()  # (dimension, code)


def parse(params: list[tuple[str, str]]) -> Inquiry:
    """The inquiry the query parameters make, or a 400 naming what is wrong."""
    unknown = sorted({name for name, _ in params} - KNOWN)
    if unknown:
        known = ", ".join(sorted(KNOWN))
        raise outcome.bad_request(f"Unknown parameter {unknown[0]!r}: the known ones are {known}")
    first, last = _day(params, "from"), _day(params, "to")
    if last < first:
        raise outcome.bad_request("'to' is before 'from'")
    if last - first >= timedelta(days=MAX_DAYS):
        raise outcome.bad_request(f"The window spans at most {MAX_DAYS} days", "too-costly")
    return Inquiry(first, last, _group_by(params), _where(params))


def _once(params: list[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in params if key == name]
    if len(values) > 1:
        raise outcome.bad_request(f"{name!r} is given {len(values)} times; once at most")
    return values[0] if values else None


def _day(params: list[tuple[str, str]], name: str) -> date:
    value = _once(params, name)
    if value is None:
        raise outcome.bad_request(f"{name!r} is required: a day, YYYY-MM-DD")
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise outcome.bad_request(f"{name!r} is a day, YYYY-MM-DD, not {value[:40]!r}") from None


def _group_by(params: list[tuple[str, str]]) -> tuple[str, ...]:
    named = [
        part.strip()
        for key, value in params
        if key == "group-by"
        for part in value.split(",")
        if part.strip()
    ]
    for name in named:
        if name not in DIMENSIONS:
            known = ", ".join(DIMENSIONS)
            raise outcome.bad_request(f"group-by {name[:40]!r} is none of {known}")
    if len(set(named)) != len(named):
        raise outcome.bad_request("group-by names a dimension twice")
    if len(named) > MAX_GROUP_BY:
        raise outcome.bad_request(f"group-by names at most {MAX_GROUP_BY} dimensions", "too-costly")
    return tuple(named)


def _where(params: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    found = []
    for name in FILTERS:
        value = _once(params, name)
        if value is None:
            continue
        if not value.strip() or len(value) > MAX_CODE_CHARS:
            raise outcome.bad_request(f"{name!r} is a code of 1 to {MAX_CODE_CHARS} characters")
        found.append((name, value.strip()))
    return tuple(found)
