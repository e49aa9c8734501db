"""Normal forms shared by the index (what is stored) and the search (what is asked).

Dates become closed UTC ranges of fixed-width ISO strings, so that plain string comparison in any
store orders them correctly; strings lose case and accents; references split into type and id.
"""

from __future__ import annotations

import re
import unicodedata
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
    except ValueError:
        return None
    tz = parts["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
        low, high = low - offset, high - offset
    return stamp(low), stamp(high)


def _bounds(parts: dict[str, str | None]) -> tuple[datetime, datetime]:
    year = int(parts["year"] or 0)
    if parts["month"] is None:
        return datetime(year, 1, 1), datetime(year + 1, 1, 1) - _TICK
    month = int(parts["month"])
    if parts["day"] is None:
        start = datetime(year, month, 1)
        following = datetime(year + (month == 12), month % 12 + 1, 1)
        return start, following - _TICK
    day = datetime(year, month, int(parts["day"]))
    if parts["hour"] is None:
        return day, day + timedelta(days=1) - _TICK
    minute = day.replace(hour=int(parts["hour"]), minute=int(parts["minute"] or 0))
    if parts["second"] is None:
        return minute, minute + timedelta(minutes=1) - _TICK
    second = minute.replace(second=int(parts["second"]))
    if parts["fraction"] is None:
        return second, second + timedelta(seconds=1) - _TICK
    exact = second.replace(microsecond=int((parts["fraction"][1:] + "000000")[:6]))
    return exact, exact


_TICK = timedelta(microseconds=1)


def stamp(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime(STAMP).rjust(len(LOWEST), "0")


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
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def format_instant(moment: datetime) -> str:
    """A FHIR instant in UTC with milliseconds, as meta.lastUpdated writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
