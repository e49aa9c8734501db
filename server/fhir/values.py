"""Normal forms shared by the index (what is stored) and the search (what is asked).

Dates become closed UTC ranges of fixed-width ISO strings, so that plain string comparison in any
store orders them correctly (clamped to the years 1 to 9999: `9999-12-31T23:59:59-14:00` ends at
the last instant of 9999 UTC); strings lose case and accents; references split into type and id.
"""

from __future__ import annotations

import calendar
import random
import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

DATE = re.compile(
    r"^(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<hour>\d{2}):(?P<minute>\d{2})(:(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
STAMP = "%Y-%m-%dT%H:%M:%S.%f"
LOWEST = "0001-01-01T00:00:00.000000"
HIGHEST = "9999-12-31T23:59:59.999999"
REFERENCE = re.compile(
    r"^(?:(?P<base>https?://.+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$"
)


def normalize_string(text: str) -> str:
    """Case- and accent-insensitive form used by string search."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def date_range(text: str) -> tuple[str, str] | None:
    """The instants a partial date or dateTime covers, as UTC stamps; None if not a date."""
    match = DATE.match(text.strip())
    if not match:
        return None
    parts = match.groupdict()
    try:
        low, high = _bounds(parts)
        offset = _offset(parts["tz"])
    except ValueError:
        return None
    return stamp(_in_utc(low, offset)), stamp(_in_utc(high, offset))


def _bounds(parts: dict[str, str | None]) -> tuple[datetime, datetime]:
    """First and last instants of the precision given, by replacing fields, never by adding
    time (which overflows at the end of 9999)."""
    year = int(parts["year"] or 0)
    if parts["month"] is None:
        return datetime(year, 1, 1), _end_of_day(datetime(year, 12, 31))
    month = int(parts["month"])
    if parts["day"] is None:
        start = datetime(year, month, 1)
        return start, _end_of_day(start.replace(day=calendar.monthrange(year, month)[1]))
    day = datetime(year, month, int(parts["day"]))
    if parts["hour"] is None:
        return day, _end_of_day(day)
    minute = day.replace(hour=int(parts["hour"]), minute=int(parts["minute"] or 0))
    if parts["second"] is None:
        return minute, minute.replace(second=59, microsecond=999999)
    second = minute.replace(second=int(parts["second"]))
    if parts["fraction"] is None:
        return second, second.replace(microsecond=999999)
    exact = second.replace(microsecond=int((parts["fraction"][1:] + "000000")[:6]))
    return exact, exact


def _end_of_day(day: datetime) -> datetime:
    return day.replace(hour=23, minute=59, second=59, microsecond=999999)


def _offset(tz: str | None) -> timedelta:
    """A time-zone offset, at most 14:00 either way as FHIR allows; ValueError beyond."""
    if not tz or tz == "Z":
        return timedelta(0)
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if minutes > 59 or hours * 60 + minutes > 14 * 60:
        raise ValueError(f"time-zone offset {tz} out of range")
    return timedelta(hours=hours, minutes=minutes) * (1 if tz[0] == "+" else -1)


def _in_utc(local: datetime, offset: timedelta) -> datetime:
    """The UTC instant of a local time, clamped to the first or last instant a datetime holds."""
    try:
        return local - offset
    except OverflowError:
        return datetime.min if offset > timedelta(0) else datetime.max


def stamp(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime(STAMP).rjust(len(LOWEST), "0")


def unique_id() -> str:
    """A version-4 UUID for what needs to be unique, not unguessable (a Bundle's id, a
    request's): drawn from Python's generator, not from a system call as `uuid4` is."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def now_instant() -> str:
    """The current time as a FHIR instant (what meta.lastUpdated carries)."""
    return format_instant(datetime.now(UTC))


def number(text: str) -> tuple[float, float, float] | None:
    """(value, low, high): the value and the range its written precision implies."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(value), float(value - half), float(value + half)


def split_reference(reference: str, own_base: str = "") -> tuple[str | None, str | None]:
    """(type, id) of a literal reference, relative or under our own base; else (None, None)."""
    match = REFERENCE.match(reference)
    if not match:
        return None, None
    if match["base"] and match["base"].rstrip("/") != own_base.rstrip("/"):
        return None, None
    return match["type"], match["id"]


def parse_instant(text: object) -> datetime | None:
    """An aware datetime from a FHIR instant or a dateTime with time and offset; else None."""
    if not isinstance(text, str) or "T" not in text:
        return None
    try:
        moment = datetime.fromisoformat(text)
        moment.astimezone(UTC)  # an instant UTC cannot hold (0001-01-01T00:00+14:00) is none
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else None


# `2026-12-05T08:00:00.000 01:00`: a `+` offset sent unencoded in a query string, as some
# clients (the SAS aggregator among them) do, decodes to a space.
UNENCODED_PLUS = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$")


def with_plus(text: str) -> str:
    """A dateTime from a query string, its offset's `+` back if it was decoded to a space."""
    return UNENCODED_PLUS.sub(r"\1+\2", text)


def moments(text: object) -> tuple[datetime, datetime] | None:
    """The first and last instants a date, partial dateTime or instant covers, as aware UTC
    datetimes: `2026-12-16` is that whole day (in UTC, the server's zone, unless an offset is
    given). The one reading of FHIR dates behind the index, the search and the scheduling rules;
    None if it is not one."""
    span = date_range(text) if isinstance(text, str) else None
    if span is None:
        return None
    low, high = (datetime.strptime(bound, STAMP).replace(tzinfo=UTC) for bound in span)
    return low, high


def period_bounds(period: object) -> tuple[datetime | None, datetime | None]:
    """A Period's start (its first instant) and end (its last), None where open. Raises
    ValueError for a bound that is not a date: a rule must never read it as "no limit"."""
    found: list[datetime | None] = []
    for name, side in (("start", 0), ("end", 1)):
        value = period.get(name) if isinstance(period, dict) else None
        span = moments(value) if value is not None else None
        if value is not None and span is None:
            raise ValueError(f"{name} {value!r} is not a date")
        found.append(span[side] if span else None)
    return found[0], found[1]


def format_instant(moment: datetime) -> str:
    """A FHIR instant in UTC with milliseconds, as meta.lastUpdated writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
