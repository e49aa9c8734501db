"""Search-index values of a resource, extracted at write time from its search parameters.

Each row names its parameter; the stores keep the rows beside the resource body (SQLite: one
table per kind; MongoDB: one array per kind) and search never reads the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.fhir.searchparams import SearchParam, registry
from server.fhir.values import (
    HIGHEST,
    LOWEST,
    date_range,
    normalize_string,
    number,
    split_reference,
)

TokenRow = tuple[str, str | None, str | None, str | None]  # param, system, code, text
StringRow = tuple[str, str, str]  # param, normalized, exact
DateRow = tuple[str, str, str]  # param, low, high
ReferenceRow = tuple[str, str | None, str | None, str]  # param, type, id, literal
NumberRow = tuple[str, float]  # param, value
QuantityRow = tuple[str, float, str | None, str | None]  # param, value, system, code
UriRow = tuple[str, str]  # param, value
CompositeRow = tuple[str, str, str, str, str]  # name, reference literal, state, low, high


@dataclass(frozen=True)
class Composite:
    """A scheduling hot path: a reference, a status and an instant searched together (a
    schedule's free slots of a day, an actor's appointments of a week). Each resource gets one
    row per reference, so that a store answers such a search from one index range per
    reference and status: (reference, state, low) ordered, the rest checked on the index row.

    `date` must be an instant-typed element (Slot.start, Appointment.start): its range is
    narrower than `INSTANT_WIDTH`, which is what lets a bound on `high` be sought on `low`."""

    reference: str  # a reference search parameter
    state: str  # a token search parameter on a required code (the status)
    date: str  # a date search parameter on an instant

    @property
    def name(self) -> str:
        return f"{self.reference}+{self.state}+{self.date}"


COMPOSITES: dict[str, tuple[Composite, ...]] = {
    "Slot": (Composite("schedule", "status", "start"),),
    "Appointment": (
        Composite("actor", "status", "date"),
        Composite("patient", "status", "date"),
    ),
}


@dataclass
class IndexValues:
    token: list[TokenRow] = field(default_factory=list)
    string: list[StringRow] = field(default_factory=list)
    date: list[DateRow] = field(default_factory=list)
    reference: list[ReferenceRow] = field(default_factory=list)
    number: list[NumberRow] = field(default_factory=list)
    quantity: list[QuantityRow] = field(default_factory=list)
    uri: list[UriRow] = field(default_factory=list)
    composite: list[CompositeRow] = field(default_factory=list)

    def sort_key(self, param: str, kind: str, descending: bool) -> Any:
        """The value a resource sorts by: lowest for ascending, highest for descending."""
        values = [_sortable(row, kind) for row in getattr(self, kind) if row[0] == param]
        values = [v for v in values if v is not None]
        if not values:
            return None
        return max(values) if descending else min(values)


def _sortable(row: tuple[Any, ...], kind: str) -> Any:
    if kind == "date":
        return row[1]
    if kind == "token":
        return row[2]
    if kind == "string":
        return row[1]
    if kind == "reference":
        return row[3]
    return row[1]


def extract(resource: dict[str, Any], own_base: str = "") -> IndexValues:
    index = IndexValues()
    for param in registry().of(resource["resourceType"]).values():
        for value in param.values(resource):
            _add(index, param, value, own_base)
    for shape in COMPOSITES.get(resource["resourceType"], ()):
        index.composite.extend(_composite_rows(index, shape))
    return index


def _composite_rows(index: IndexValues, shape: Composite) -> list[CompositeRow]:
    state = next((row[2] or "" for row in index.token if row[0] == shape.state), "")
    return [
        (shape.name, literal, state, low, high)
        for ref_param, _, _, literal in index.reference
        if ref_param == shape.reference
        for param, low, high in index.date
        if param == shape.date
    ]


def _add(index: IndexValues, param: SearchParam, value: Any, own_base: str) -> None:
    kind = param.type
    if kind == "token":
        index.token.extend((param.code, *row) for row in tokens(value))
    elif kind == "string":
        index.string.extend((param.code, normalize_string(s), s) for s in strings(value))
    elif kind == "date":
        span = dates(value)
        if span:
            index.date.append((param.code, *span))
    elif kind == "reference":
        index.reference.extend((param.code, *row) for row in references(value, own_base))
    elif kind == "number":
        parsed = number(str(value))
        if parsed:
            index.number.append((param.code, parsed[0]))
    elif kind == "quantity" and isinstance(value, dict) and "value" in value:
        index.quantity.append(
            (
                param.code,
                float(value["value"]),
                value.get("system"),
                value.get("code") or value.get("unit"),
            )
        )
    elif kind == "uri" and isinstance(value, str):
        index.uri.append((param.code, value))


def tokens(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    """(system, code, text) rows for a code, Coding, CodeableConcept, Identifier or ContactPoint."""
    if isinstance(value, bool):
        return [(None, "true" if value else "false", None)]
    if isinstance(value, str | int):
        return [(None, str(value), None)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value):
        rows = [row for coding in value.get("coding", []) for row in tokens(coding)]
        if value.get("text"):
            rows.append((None, None, normalize_string(value["text"])))
        return rows
    if "value" in value:  # Identifier, ContactPoint
        type_text = (
            value.get("type", {}).get("text") if isinstance(value.get("type"), dict) else None
        )
        system = value.get("system")
        return [(system, str(value["value"]), normalize_string(type_text) if type_text else None)]
    if "code" in value or "system" in value:
        display = value.get("display")
        return [
            (value.get("system"), value.get("code"), normalize_string(display) if display else None)
        ]
    return []


def strings(value: Any) -> list[str]:
    """Searchable texts of a string, HumanName or Address."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    found: list[str] = []
    for key in (
        "text",
        "family",
        "given",
        "prefix",
        "suffix",
        "line",
        "city",
        "district",
        "state",
        "postalCode",
        "country",
    ):
        item = value.get(key)
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list):
            found.extend(x for x in item if isinstance(x, str))
    return found


def dates(value: Any) -> tuple[str, str] | None:
    if isinstance(value, dict):  # Period
        start = date_range(value["start"]) if "start" in value else None
        end = date_range(value["end"]) if "end" in value else None
        if not start and not end:
            return None
        return (start[0] if start else LOWEST, end[1] if end else HIGHEST)
    return date_range(str(value))


def references(value: Any, own_base: str) -> list[tuple[str | None, str | None, str]]:
    literal = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(literal, str) or literal.startswith("#"):
        return []
    target_type, target_id = split_reference(literal, own_base)
    if target_type and target_id:
        return [(target_type, target_id, f"{target_type}/{target_id}")]
    return [(None, None, literal)]
