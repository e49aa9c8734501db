"""Bringing a store written by an earlier version of the server to the current schema.

`PRAGMA user_version` says which schema a file has. What changed shape is dropped before the
current schema's `CREATE ... IF NOT EXISTS` statements run, and refilled after them, in write
transactions that every worker opening the file runs (the first one does the work).

Version 1: the composite rows gain the resource's status (`state`), ordered before the instant,
so that a schedule's free slots of a day are one index range (`server.store.composite`). The old
rows are dropped and rebuilt from the reference, date and token rows they derive from.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from server.fhir.indexing import COMPOSITES

CURRENT = 1


def before_schema(db: sqlite3.Connection) -> None:
    """Drop what the current schema defines differently (it is then created anew)."""
    with _transaction(db):
        if _version(db) < 1 and "state" not in _columns(db, "idx_composite"):
            db.execute("DROP TABLE IF EXISTS idx_composite")  # its indexes go with it


def after_schema(db: sqlite3.Connection) -> None:
    """Fill what `before_schema` dropped, and record the version (once, whichever worker)."""
    with _transaction(db):
        if _version(db) < 1:
            _rebuild_composites(db)
        if _version(db) < CURRENT:
            db.execute(f"PRAGMA user_version = {CURRENT}")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _rebuild_composites(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM idx_composite")  # rows a worker already wrote are rebuilt too
    for resource_type, shapes in COMPOSITES.items():
        for shape in shapes:
            db.execute(
                "INSERT INTO idx_composite (rid, rtype, name, literal, state, low, high) "
                "SELECT ref.rid, ref.rtype, ?, ref.literal, coalesce((SELECT t.code FROM "
                "idx_token t WHERE t.rid = ref.rid AND t.param = ? LIMIT 1), ''), d.low, d.high "
                "FROM idx_reference ref JOIN idx_date d ON d.rid = ref.rid AND d.param = ? "
                "WHERE ref.rtype = ? AND ref.param = ?",
                (shape.name, shape.state, shape.date, resource_type, shape.reference),
            )
