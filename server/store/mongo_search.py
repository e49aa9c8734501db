"""Translation of the store-neutral search form into MongoDB filters and sort stages.

The index values of a resource live in its document, one array per kind (`tok`, `str`, `date`,
`ref`, `num`, `qty`, `uri`), each element naming its parameter `p`. Every condition is an
`$elemMatch` on one array, so that the parameter and the value hold in the SAME element.

The shapes are deliberately plain, so that real MongoDB (>= 6) and nx-27017 (the test server)
give the same answers: inside `$elemMatch` only field comparisons (`$eq`, ranges, `$regex`);
alternatives are a top-level `$or` of `$elemMatch`es, negations a `$nor` of them. nx-27017 gets
`$or`/`$in`/`$not` inside `$elemMatch`, a bare `null`, `$min`/`$filter` over arrays and any
ObjectId comparison in `aggregate` wrong.
Client values only ever sit under `$eq`, a range operator or an escaped `$regex`.
"""

from __future__ import annotations

import re
from typing import Any

from server.fhir.indexing import IndexValues
from server.fhir.search import ANY_SYSTEM, Match, RangeValue, ReferenceValue, SortKey
from server.store import composite

Filter = dict[str, Any]

ARRAYS = {
    "token": "tok",
    "string": "str",
    "date": "date",
    "reference": "ref",
    "number": "num",
    "quantity": "qty",
    "uri": "uri",
    "composite": "cmp",
}
FIELDS = {
    "token": ("p", "s", "c", "t"),
    "string": ("p", "n", "e"),
    "date": ("p", "lo", "hi"),
    "reference": ("p", "rt", "ri", "l"),
    "number": ("p", "v"),
    "quantity": ("p", "v", "s", "c"),
    "uri": ("p", "v"),
    "composite": ("n", "l", "st", "lo", "hi"),
}
COMPARISONS = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}
# The element field a kind sorts by (as `sqlite_search.order_by`); dates descending use `hi`.
SORT_FIELDS = {
    "date": "lo",
    "token": "c",
    "string": "n",
    "reference": "l",
    "uri": "v",
    "number": "v",
    "quantity": "v",
}
PREFIX_END = "\U0010ffff"
NOTHING: Filter = {"_id": {"$in": []}}


def arrays(index: IndexValues | None) -> dict[str, list[Filter]]:
    """The index arrays of a resource document (all empty for a deletion)."""
    index = index or IndexValues()
    return {
        array: [dict(zip(FIELDS[kind], row, strict=True)) for row in getattr(index, kind)]
        for kind, array in ARRAYS.items()
    }


def where(resource_type: str, matches: list[Match]) -> Filter:
    """The filter selecting live resources of one type meeting every Match."""
    found: Filter = {"type": resource_type, "deleted": False}
    timeline = composite.plan(resource_type, matches)
    if timeline is not None:
        matches = [m for m in matches if not any(m is c for c in timeline.covered)]
    conditions = [_condition(match) for match in matches]
    if timeline is not None:
        conditions.insert(0, _timeline(timeline))
    if conditions:
        found["$and"] = conditions
    return found


def _timeline(plan: composite.CompositePlan) -> Filter:
    """The composite-index condition: served by (type, cmp.n, cmp.l, cmp.st, cmp.lo), one
    range per reference and state; the dates checked exactly on the same element."""
    element: Filter = {
        "n": plan.name,
        "l": {"$in": list(plan.literals)},
        "st": {"$in": list(plan.states)},
    }
    terms = [("lo", COMPARISONS[comparison], value) for comparison, value in plan.seek]
    for date in plan.dates:
        terms += [
            (field, operator, operand)
            for field, condition in range_filters(date, "lo", "hi")[0].items()
            for operator, operand in condition.items()
        ]
    for field, operator, operand in terms:
        bounds = element.setdefault(field, {})
        tighter = max if operator in ("$gt", "$gte") else min
        bounds[operator] = tighter(bounds.get(operator, operand), operand)
    return {"cmp": {"$elemMatch": element}}


def _condition(match: Match) -> Filter:
    array = ARRAYS[match.kind]
    if match.modifier == "missing":
        present = {array: {"$elemMatch": {"p": match.param}}}
        return {"$nor": [present]} if match.values[0] else present
    branches = [
        {array: {"$elemMatch": {"p": match.param, **element}}}
        for value in match.values
        for element in _alternatives(match, value)
    ]
    if match.modifier == "not":
        return {"$nor": branches} if branches else {}
    if not branches:
        return NOTHING
    return branches[0] if len(branches) == 1 else {"$or": branches}


def _alternatives(match: Match, value: Any) -> list[Filter]:
    """Conditions on one element, any of which makes `value` match; none: it never matches."""
    kind, modifier = match.kind, match.modifier
    if kind == "token":
        return _token(value, modifier)
    if kind == "string":
        if modifier == "exact":
            return [{"e": {"$eq": value}}]
        if modifier == "contains":
            return [{"n": {"$regex": _literal_pattern(value)}}]
        return [{"n": _prefix(value)}]
    if kind == "date":
        return range_filters(value, "lo", "hi")
    if kind == "reference":
        return [_reference(value)]
    if kind == "uri":
        return _uri(value, modifier)
    return [dict(element, **_unit(value)) for element in range_filters(value, "v", "v")]


def _token(value: Any, modifier: str | None) -> list[Filter]:
    if modifier == "text":
        return [{"t": _prefix(value)}]
    if value.code is None and value.system in (ANY_SYSTEM, None):
        return []  # as in SQL, `code = NULL` holds for no row
    if value.system == ANY_SYSTEM:
        return [{"c": {"$eq": value.code}}]
    if value.system is None:
        return [{"s": {"$eq": None}, "c": {"$eq": value.code}}]
    if value.code is None:
        return [{"s": {"$eq": value.system}}]
    return [{"s": {"$eq": value.system}, "c": {"$eq": value.code}}]


def _reference(value: ReferenceValue) -> Filter:
    if value.type and value.id:
        return {"ri": {"$eq": value.id}, "rt": {"$eq": value.type}}
    if value.id:
        return {"ri": {"$eq": value.id}}
    return {"l": {"$eq": value.literal}}


def _uri(value: str, modifier: str | None) -> list[Filter]:
    if modifier == "below":
        return [{"v": _prefix(value)}]
    if modifier == "above":  # the stored uri is a prefix of the asked one
        return [{"v": {"$eq": value[:end]}} for end in range(len(value) + 1)]
    return [{"v": {"$eq": value}}]


def _unit(value: RangeValue) -> Filter:
    unit: Filter = {}
    if value.code:
        unit["c"] = {"$eq": value.code}
    if value.system:
        unit["s"] = {"$eq": value.system}
    return unit


def _prefix(value: str) -> Filter:
    return {"$gte": value, "$lt": value + PREFIX_END}


def _literal_pattern(value: str) -> str:
    """A regex matching `value` literally; NUL spelled `\\x00`, as BSON cannot carry it raw."""
    return re.escape(value).replace("\x00", "\\x00")


def range_filters(value: RangeValue, low: str, high: str) -> list[Filter]:
    """FHIR prefix semantics between the stored range [low, high] and the asked one, as
    alternatives (as `sqlite_search.range_sql`; `ne` is `low < lo OR high > hi`)."""
    prefix, lo, hi = value.prefix, value.low, value.high
    if prefix == "eq":
        return [_both((low, "$gte", lo), (high, "$lte", hi))]
    if prefix == "ne":
        return [{low: {"$lt": lo}}, {high: {"$gt": hi}}]
    single = {
        "gt": (high, "$gt", hi),
        "lt": (low, "$lt", lo),
        "ge": (high, "$gte", lo),
        "le": (low, "$lte", hi),
        "sa": (low, "$gt", hi),
        "eb": (high, "$lt", lo),
    }
    if prefix in single:
        return [_both(single[prefix])]
    return [_both((high, "$gte", lo), (low, "$lte", hi))]  # ap: overlaps


def _both(*terms: tuple[str, str, Any]) -> Filter:
    merged: Filter = {}
    for field, operator, operand in terms:
        merged.setdefault(field, {})[operator] = operand
    return merged


def sort_stages(match: Filter, sort: list[SortKey], limit: int) -> list[Filter]:
    """Aggregation stages giving the first `_id`s in sorted order: each key is the lowest
    (ascending) or highest (descending) value of its parameter, missing first ascending and
    last descending, then insertion order (as `sqlite_search.order_by`). Each key unwinds its
    own copy `s<i>` of its array, then groups back with `$min`/`$max` of a `$cond`."""
    stages: list[Filter] = [
        {"$match": match},
        {"$project": {f"s{i}": f"${ARRAYS[key.kind]}" for i, key in enumerate(sort)}},
    ]
    for i, key in enumerate(sort):
        stages += _key_stages(i, key, len(sort))
    order = {f"k{i}": -1 if key.descending else 1 for i, key in enumerate(sort)}
    return [*stages, {"$sort": {**order, "_id": 1}}, {"$limit": limit}, {"$project": {"_id": 1}}]


def _key_stages(i: int, key: SortKey, keys: int) -> list[Filter]:
    field = "hi" if key.kind == "date" and key.descending else SORT_FIELDS[key.kind]
    value = {"$cond": [{"$eq": [f"$s{i}.p", {"$literal": key.param}]}, f"$s{i}.{field}", None]}
    carried = {f"k{j}": {"$first": f"$k{j}"} for j in range(i)}
    carried |= {f"s{j}": {"$first": f"$s{j}"} for j in range(i + 1, keys)}
    group = {"_id": "$_id", f"k{i}": {"$max" if key.descending else "$min": value}, **carried}
    return [{"$unwind": {"path": f"$s{i}", "preserveNullAndEmptyArrays": True}}, {"$group": group}]
