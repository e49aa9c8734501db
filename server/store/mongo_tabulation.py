"""Tabulations (see `server.store.base.Tabulation`) on MongoDB: one aggregation pipeline over
the `tok` index array of `resources` (its `_tag` elements), never a resource body.

    $match    live resources of the types, with a span code in range and every cell system
              (served by the (type, tok.p, tok.c) index)
    $project, $unwind, $match    one document per `_tag` element
    $group    per resource: its code of each cell system (and the weight)
    $group    per cell: its count (or sum of weights), and the codes of its group
    $group    per group: the total, and the sum of the cells of at least the floor

The shapes are the plain ones real MongoDB (>= 6) and nx-27017 (the test server) agree on:
a resource's codes are picked as `$max` of a `$cond` per element (as `mongo_search` sorts), and
keys are strings made with `$concat` (nx-27017 does not evaluate a document `_id` in `$group`),
their codes joined by SEPARATOR, a character no FHIR code holds (codes have no whitespace).
"""

from __future__ import annotations

from typing import Any

from server.store.base import Tabulated, Tabulation

Stage = dict[str, Any]
TAG = "_tag"
SEPARATOR = "\x1f"


def stages(tabulation: Tabulation) -> list[Stage]:
    t = tabulation
    systems = [*t.cells, *([t.weight] if t.weight is not None else [])]
    codes = {f"c{n}": _code_of(system) for n, system in enumerate(systems)}
    weight = {"$toInt": f"$c{len(t.cells)}"} if t.weight is not None else 1
    groups = [f"$c{t.cells.index(system)}" for system in t.groups]
    return [
        {"$match": _match(t, systems)},
        {"$project": {"tok": 1}},
        {"$unwind": "$tok"},
        {"$match": {"tok.p": TAG, "tok.s": {"$in": systems}}},
        {"$group": {"_id": "$_id", **codes}},
        {
            "$group": {
                "_id": _key([f"$c{n}" for n in range(len(t.cells))]),
                "n": {"$sum": weight},
                "g": {"$first": _key(groups)},
            }
        },
        {
            "$group": {
                "_id": "$g",
                "total": {"$sum": "$n"},
                "shown": {"$sum": {"$cond": [{"$gte": ["$n", t.floor]}, "$n", 0]}},
            }
        },
    ]


def _match(t: Tabulation, systems: list[str]) -> Stage:
    wanted = dict(t.where)
    span: Stage = {"p": TAG, "s": t.span, "c": {"$gte": t.low, "$lte": t.high}}
    conditions: list[Stage] = [{"tok": {"$elemMatch": span}}]
    for system in systems:
        element: Stage = {"p": TAG, "s": system}
        if system in wanted:
            element["c"] = {"$eq": wanted[system]}
        conditions.append({"tok": {"$elemMatch": element}})
    return {"type": {"$in": list(t.types)}, "deleted": False, "$and": conditions}


def _code_of(system: str) -> Stage:
    return {"$max": {"$cond": [{"$eq": ["$tok.s", system]}, "$tok.c", None]}}


def _key(fields: list[str]) -> Any:
    if not fields:
        return {"$literal": ""}
    parts: list[str] = []
    for field in fields:
        parts += [SEPARATOR, field] if parts else [field]
    return {"$concat": parts}


def tabulated(doc: dict[str, Any], width: int) -> Tabulated:
    codes = tuple(doc["_id"].split(SEPARATOR)) if width else ()
    return Tabulated(codes, int(doc["total"]), int(doc["shown"]))
