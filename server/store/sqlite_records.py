"""Records (see `server.store.base`) on SQLite: one `records` table keyed by (kind, key).

Each function runs on one connection; `add` and `put` run inside the store's write transaction,
so the check "absent or expired" and the insert are one atomic step across worker processes.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    expires_at REAL, PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expiry ON records (kind, expires_at)
    WHERE expires_at IS NOT NULL;
"""
LIVE = "(expires_at IS NULL OR expires_at > ?)"


def one(db: sqlite3.Connection, kind: str, key: str, now: float) -> dict[str, Any] | None:
    row = db.execute(
        f"SELECT value FROM records WHERE kind = ? AND key = ? AND {LIVE}", (kind, key, now)
    ).fetchone()
    return orjson.loads(row[0]) if row else None


def every(db: sqlite3.Connection, kind: str, now: float) -> list[dict[str, Any]]:
    rows = db.execute(
        f"SELECT value FROM records WHERE kind = ? AND {LIVE} ORDER BY key", (kind, now)
    ).fetchall()
    return [orjson.loads(row[0]) for row in rows]


def put(db: sqlite3.Connection, kind: str, key: str, value: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO records (kind, key, value, expires_at) VALUES (?, ?, ?, NULL) "
        "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, expires_at = NULL",
        (kind, key, orjson.dumps(value)),
    )


def add(
    db: sqlite3.Connection,
    kind: str,
    key: str,
    value: dict[str, Any],
    expires_at: float,
    now: float,
) -> bool:
    """Purge the kind's expired records, then insert unless a live one holds the key."""
    db.execute("DELETE FROM records WHERE kind = ? AND expires_at <= ?", (kind, now))
    row = db.execute(
        "INSERT INTO records (kind, key, value, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, "
        "expires_at = excluded.expires_at WHERE records.expires_at <= ? RETURNING 1",
        (kind, key, orjson.dumps(value), expires_at, now),
    ).fetchone()
    return row is not None
