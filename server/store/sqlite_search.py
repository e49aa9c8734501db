"""Translation of the store-neutral search form into SQL over the SQLite index tables.

Each Match becomes a condition on the resource row `r`: the most selective one drives the query
(`r.seq IN (SELECT rid ...)`), the others are probed per candidate with correlated EXISTS, which
the `(rid, param)` indexes answer in one lookup each.

However many values a Match has (a chain resolved to thousands of references, `$find` over every
practitioner of a postal code), the statement stays within SQLite's limits: the values that are
equalities on the same columns are one `IN` over a JSON array bound as a single variable, and
alternatives and conditions are nested as balanced trees (SQLite refuses an expression 1,000
deep, which a chain of a thousand ORs is).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson

from server.fhir.search import ANY_SYSTEM, Match, RangeValue, SortKey
from server.store import composite

TABLES = {
    "token": "idx_token",
    "string": "idx_string",
    "date": "idx_date",
    "reference": "idx_reference",
    "number": "idx_number",
    "quantity": "idx_quantity",
    "uri": "idx_uri",
    "composite": "idx_composite",
}
# The order in which a Match is preferred to drive a query: the most selective kinds first.
DRIVER_RANK = {
    "reference": 0,
    "token": 1,
    "uri": 2,
    "string": 3,
    "quantity": 4,
    "number": 4,
    "date": 5,
}
PREFIX_END = "\U0010ffff"
# A search within these reads a bounded number of rows (a schedule's slots of a week at most).
BOUNDED_RANGES = 20
BOUNDED_WINDOW = timedelta(days=7)

SQL = tuple[str, list[Any]]
Equality = tuple[tuple[str, ...], tuple[Any, ...]]  # columns of the index row, the values wanted


def where(resource_type: str, matches: list[Match]) -> SQL:
    """The WHERE clause (without the keyword) selecting live resources meeting every Match."""
    clauses, args = ["r.type = ?", "r.deleted = 0"], [resource_type]
    composite = _composite(resource_type, matches)
    if composite:
        (sql, composite_args), covered = composite
        clauses.append(sql)
        args += composite_args
        matches = [m for m in matches if not any(m is c for c in covered)]
    driver = None if composite else _driver(matches)
    for match in matches:
        sql, match_args = _condition(resource_type, match, drive=match is driver)
        clauses.append(sql)
        args += match_args
    return balanced(clauses, "AND"), args


def timeline_only(resource_type: str, matches: list[Match]) -> bool:
    """Whether the composite rows drive the search from a few ranges of at most
    `BOUNDED_WINDOW` each: then its work is bounded, whatever else it asks (the caller's
    visibility, other conditions), since each other Match is one indexed probe per row of
    those ranges."""
    found = composite.plan(resource_type, matches)
    return (
        found is not None
        and len(found.literals) * len(found.states) <= BOUNDED_RANGES
        and composite.window(found) <= BOUNDED_WINDOW
    )


def _composite(resource_type: str, matches: list[Match]) -> tuple[SQL, tuple[Match, ...]] | None:
    """The composite-index driver for a scheduling hot path, and the Matches it answers: one
    range of `idx_composite_drive` per reference and state."""
    found = composite.plan(resource_type, matches)
    if found is None:
        return None
    literals, literal_args = _one_of(("literal",), [(literal,) for literal in found.literals])
    states = ", ".join("?" for _ in found.states)
    sql = (
        "r.seq IN (SELECT rid FROM idx_composite i WHERE i.rtype = ? AND i.name = ? "
        f"AND {literals} AND i.state IN ({states})"
    )
    args: list[Any] = [resource_type, found.name, *literal_args, *found.states]
    for comparison, value in found.seek:
        sql += f" AND i.low {comparison} ?"
        args.append(value)
    for date in found.dates:
        exact, exact_args = range_sql(date, "i.low", "i.high")
        sql += f" AND {exact}"
        args += exact_args
    return (sql + ")", args), found.covered


def _driver(matches: list[Match]) -> Match | None:
    candidates = [
        m
        for m in matches
        if m.modifier not in ("not", "missing", "contains")
        and not any(isinstance(v, RangeValue) and v.prefix == "ne" for v in m.values)
    ]
    return min(candidates, key=lambda m: DRIVER_RANK[m.kind], default=None)


def _condition(resource_type: str, match: Match, drive: bool) -> SQL:
    table = TABLES[match.kind]
    head = f"SELECT {'rid' if drive else '1'} FROM {table} i WHERE "
    scope = "i.rtype = ? AND i.param = ?" if drive else "i.rid = r.seq AND i.param = ?"
    scope_args: list[Any] = [resource_type, match.param] if drive else [match.param]
    if match.modifier == "missing":
        return f"{'NOT ' if match.values[0] else ''}EXISTS ({head}{scope})", scope_args
    ors, args = _alternatives(match)
    inner = f"{head}{scope} AND ({ors})"
    if match.modifier == "not":
        return f"NOT EXISTS ({inner})", scope_args + args
    if drive:
        return f"r.seq IN ({inner})", scope_args + args
    return f"EXISTS ({inner})", scope_args + args


def _alternatives(match: Match) -> SQL:
    """Any of the Match's values: equalities on the same columns as one set, the others ORed."""
    parts: list[str] = []
    args: list[Any] = []
    sets: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for value in match.values:
        equality = _equality(match, value)
        if equality is not None:
            sets.setdefault(equality[0], []).append(equality[1])
            continue
        sql, value_args = _value(match, value)
        parts.append(f"({sql})")
        args += value_args
    for columns, rows in sets.items():
        sql, set_args = _one_of(columns, rows)
        parts.append(f"({sql})")
        args += set_args
    return balanced(parts, "OR"), args


def balanced(parts: list[str], operator: str) -> str:
    """`parts` joined by AND or OR, nested as a balanced tree: log2(n) deep, not n."""
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({balanced(parts[:middle], operator)} {operator} {balanced(parts[middle:], operator)})"


def _equality(match: Match, value: Any) -> Equality | None:
    """The value as columns equal to values, when that is what it asks; else None."""
    kind, modifier = match.kind, match.modifier
    if kind == "token" and modifier != "text":
        if value.system == ANY_SYSTEM:
            return ("code",), (value.code,)
        if value.system is None:
            return None  # `|code`: no system, a condition of its own
        if value.code is None:
            return ("system",), (value.system,)
        return ("system", "code"), (value.system, value.code)
    if kind == "reference":
        if value.type and value.id:
            return ("target_id", "target_type"), (value.id, value.type)
        if value.id:
            return ("target_id",), (value.id,)
        return ("literal",), (value.literal,)
    if (kind, modifier) in (("uri", None), ("string", "exact")):
        return ("value" if kind == "uri" else "exact",), (value,)
    return None


def _one_of(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> SQL:
    """The index row's `columns` equal to one of `rows`; several rows are one JSON array."""
    if len(rows) == 1:
        return " AND ".join(f"i.{c} = ?" for c in columns), list(rows[0])
    if len(columns) == 1:
        listed = orjson.dumps([row[0] for row in rows]).decode()
        return f"i.{columns[0]} IN (SELECT value FROM json_each(?))", [listed]
    fields = ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(columns)))
    tupled = ", ".join(f"i.{c}" for c in columns)
    listed = orjson.dumps([list(row) for row in rows]).decode()
    return f"({tupled}) IN (SELECT {fields} FROM json_each(?))", [listed]


def _value(match: Match, value: Any) -> SQL:
    """A value that is not an equality (`_equality`)."""
    kind, modifier = match.kind, match.modifier
    if kind == "token":
        if modifier == "text":
            return "i.text >= ? AND i.text < ?", [value, value + PREFIX_END]
        return "i.system IS NULL AND i.code = ?", [value.code]
    if kind == "string":
        if modifier == "contains":
            return "instr(i.norm, ?) > 0", [value]
        return "i.norm >= ? AND i.norm < ?", [value, value + PREFIX_END]
    if kind == "date":
        return range_sql(value, "i.low", "i.high")
    if kind == "uri":
        if modifier == "below":
            return "i.value >= ? AND i.value < ?", [value, value + PREFIX_END]
        return "substr(?, 1, length(i.value)) = i.value", [value]  # above
    sql, args = range_sql(value, "i.value", "i.value")
    if kind == "quantity" and value.code:
        sql, args = f"{sql} AND i.code = ?", [*args, value.code]
    if kind == "quantity" and value.system:
        sql, args = f"{sql} AND i.system = ?", [*args, value.system]
    return sql, args


def range_sql(value: RangeValue, low: str, high: str) -> SQL:
    """FHIR prefix semantics between the stored range [low, high] and the asked one."""
    prefix, lo, hi = value.prefix, value.low, value.high
    if prefix == "eq":
        return f"{low} >= ? AND {high} <= ?", [lo, hi]
    if prefix == "ne":
        return f"NOT ({low} >= ? AND {high} <= ?)", [lo, hi]
    if prefix == "gt":
        return f"{high} > ?", [hi]
    if prefix == "lt":
        return f"{low} < ?", [lo]
    if prefix == "ge":
        return f"{high} >= ?", [lo]
    if prefix == "le":
        return f"{low} <= ?", [hi]
    if prefix == "sa":
        return f"{low} > ?", [hi]
    if prefix == "eb":
        return f"{high} < ?", [lo]
    return f"{high} >= ? AND {low} <= ?", [lo, hi]  # ap: overlaps


def order_by(sort: list[SortKey]) -> SQL:
    """ORDER BY terms (without the keyword): each sort key, then insertion order."""
    terms, args = [], []
    for key in sort:
        column = {
            "date": "low",
            "token": "code",
            "string": "norm",
            "reference": "literal",
            "uri": "value",
            "number": "value",
            "quantity": "value",
        }[key.kind]
        if key.kind == "date" and key.descending:
            column = "high"
        aggregate = "MAX" if key.descending else "MIN"
        terms.append(
            f"(SELECT {aggregate}(i.{column}) FROM {TABLES[key.kind]} i "
            f"WHERE i.rid = r.seq AND i.param = ?) {'DESC' if key.descending else 'ASC'}"
        )
        args.append(key.param)
    terms.append("r.seq ASC")
    return ", ".join(terms), args
