"""Tabulations (see `server.store.base.Tabulation`) on SQLite: one statement over the token
index rows of `_tag`, never a resource body.

The span system's rows drive (a range of `idx_tag_span`: type, system, code); each other cell
system, and the weight, is one probe per resource (`idx_tag_rid`: rid, system). Both are partial
indexes holding the `_tag` rows only (the few tags a resource carries, none of the other token
rows), each covering what it is read for. The inner GROUP BY makes the cells, the outer one the
groups. A resource has index rows for its current, live version only (a new version replaces
them, a deletion removes them), so nothing joins `resources`.

A tabulation stops at the request's deadline: SQLite's progress handler looks at it every
PROGRESS_STEPS steps of the statement and interrupts it, answered 503 (`deadline`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from server.fhir.outcome import FhirError
from server.store import deadline
from server.store.base import Tabulated, Tabulation

SCHEMA = """
CREATE INDEX IF NOT EXISTS idx_tag_span ON idx_token (rtype, system, code, rid)
    WHERE param = '_tag';
CREATE INDEX IF NOT EXISTS idx_tag_rid ON idx_token (rid, system, code) WHERE param = '_tag';
"""
PROGRESS_STEPS = 100_000
# The parameter, written as a literal in the statement: SQLite uses a partial index only when
# the query repeats its condition literally, not through a variable.
TAG = "'_tag'"


def statement(tabulation: Tabulation) -> tuple[str, list[Any]]:
    """The SQL and its arguments: the groups' codes, then their total and shown sums."""
    t = tabulation
    drive = f"c{t.cells.index(t.span)}"
    joins, join_args = _probes(t, drive)
    marks = ", ".join("?" for _ in t.types)
    where = (
        f"{drive}.rtype IN ({marks}) AND {drive}.param = {TAG} AND {drive}.system = ? "
        f"AND {drive}.code >= ? AND {drive}.code <= ?"
    )
    where_args = [*t.types, t.span, t.low, t.high]
    for system, code in t.where:
        if system == t.span:
            where += f" AND {drive}.code = ?"
            where_args.append(code)
    named = ", ".join(f"c{n}.code AS k{n}" for n in range(len(t.cells)))
    count = "SUM(CAST(w.code AS INTEGER))" if t.weight is not None else "COUNT(*)"
    inner = (
        f"SELECT {named}, {count} AS n FROM idx_token {drive} INDEXED BY idx_tag_span "
        f"{joins} WHERE {where} GROUP BY {', '.join(f'k{n}' for n in range(len(t.cells)))}"
    )
    keys = [f"k{t.cells.index(system)}" for system in t.groups]
    sums = "SUM(n), SUM(CASE WHEN n >= ? THEN n ELSE 0 END)"
    sql = f"SELECT {', '.join([*keys, sums])} FROM ({inner})"
    if keys:
        sql += f" GROUP BY {', '.join(keys)}"
    return sql, [t.floor, *join_args, *where_args]


def _probes(t: Tabulation, drive: str) -> tuple[str, list[Any]]:
    """One join per cell system but the span (and the weight): the resource's row of it."""
    wanted = dict(t.where)
    probes = [(f"c{n}", system) for n, system in enumerate(t.cells) if system != t.span]
    if t.weight is not None:
        probes.append(("w", t.weight))
    joins, args = [], []
    for alias, system in probes:
        condition = f"{alias}.rid = {drive}.rid AND {alias}.param = {TAG} AND {alias}.system = ?"
        args.append(system)
        if system in wanted:
            condition += f" AND {alias}.code = ?"
            args.append(wanted[system])
        joins.append(f"JOIN idx_token {alias} INDEXED BY idx_tag_rid ON {condition}")
    return " ".join(joins), args


def tabulate(db: sqlite3.Connection, tabulation: Tabulation) -> list[Tabulated]:
    sql, args = statement(tabulation)
    db.set_progress_handler(_past_deadline, PROGRESS_STEPS)
    try:
        rows = db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as error:
        if "interrupt" in str(error):
            deadline.check()
        raise
    finally:
        db.set_progress_handler(None, 0)
    width = len(tabulation.groups)
    return [
        Tabulated(tuple(row[:width]), int(row[width]), int(row[width + 1]))
        for row in rows
        if row[width] is not None  # no GROUP BY: one row of NULLs when there is no cell
    ]


def _past_deadline() -> bool:
    try:
        deadline.check()
    except FhirError:
        return True
    return False
