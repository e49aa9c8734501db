"""The embedded store: SQLite in WAL mode, in-process, nothing to install.

`resources` holds the current version of each resource (its `seq` is the insertion order that
paging follows), `history` every version, and one `idx_*` table per search-parameter kind the
index values. Writes run inside `BEGIN IMMEDIATE` transactions, so writers are serialized by
SQLite itself, across threads and worker processes alike.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import orjson

from server.fhir import outcome
from server.fhir.indexing import IndexValues
from server.store import (
    cursors,
    deadline,
    sqlite_migrations,
    sqlite_records,
    sqlite_search,
    sqlite_tabulation,
)
from server.store.base import (
    Found,
    Query,
    Reader,
    Store,
    Tabulated,
    Tabulation,
    Transaction,
    Version,
)

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT NOT NULL,
    version INTEGER NOT NULL, last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, body BLOB,
    UNIQUE (type, id));
CREATE INDEX IF NOT EXISTS resources_by_type ON resources (type, deleted, seq);
CREATE TABLE IF NOT EXISTS history (
    hseq INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, id TEXT NOT NULL,
    version INTEGER NOT NULL, last_updated TEXT NOT NULL, method TEXT NOT NULL, body BLOB,
    UNIQUE (type, id, version));
CREATE INDEX IF NOT EXISTS history_by_type ON history (type, hseq);
CREATE TABLE IF NOT EXISTS idx_token (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    param TEXT NOT NULL, system TEXT, code TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS idx_token_drive ON idx_token (rtype, param, code, system);
CREATE INDEX IF NOT EXISTS idx_token_probe ON idx_token (rid, param, code);
CREATE TABLE IF NOT EXISTS idx_string (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    param TEXT NOT NULL, norm TEXT NOT NULL, exact TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_string_drive ON idx_string (rtype, param, norm);
CREATE INDEX IF NOT EXISTS idx_string_probe ON idx_string (rid, param);
CREATE TABLE IF NOT EXISTS idx_date (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    param TEXT NOT NULL, low TEXT NOT NULL, high TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_date_drive ON idx_date (rtype, param, low);
CREATE INDEX IF NOT EXISTS idx_date_probe ON idx_date (rid, param, low, high);
CREATE TABLE IF NOT EXISTS idx_reference (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    param TEXT NOT NULL, target_type TEXT, target_id TEXT, literal TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_reference_drive
    ON idx_reference (rtype, param, target_id, target_type);
CREATE INDEX IF NOT EXISTS idx_reference_probe ON idx_reference (rid, param, target_id);
CREATE INDEX IF NOT EXISTS idx_reference_literal ON idx_reference (rtype, param, literal);
CREATE TABLE IF NOT EXISTS idx_number (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    param TEXT NOT NULL, value REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idx_number_probe ON idx_number (rid, param);
CREATE INDEX IF NOT EXISTS idx_number_drive ON idx_number (rtype, param, value);
CREATE TABLE IF NOT EXISTS idx_quantity (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    param TEXT NOT NULL, value REAL NOT NULL, system TEXT, code TEXT);
CREATE INDEX IF NOT EXISTS idx_quantity_probe ON idx_quantity (rid, param);
CREATE INDEX IF NOT EXISTS idx_quantity_drive ON idx_quantity (rtype, param, value);
CREATE TABLE IF NOT EXISTS idx_uri (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    param TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_uri_probe ON idx_uri (rid, param);
CREATE INDEX IF NOT EXISTS idx_uri_drive ON idx_uri (rtype, param, value);
CREATE TABLE IF NOT EXISTS idx_composite (rid INTEGER NOT NULL, rtype TEXT NOT NULL,
    name TEXT NOT NULL, literal TEXT NOT NULL, state TEXT NOT NULL, low TEXT NOT NULL,
    high TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS idx_composite_drive
    ON idx_composite (rtype, name, literal, state, low, high, rid);
CREATE INDEX IF NOT EXISTS idx_composite_rid ON idx_composite (rid);
CREATE TABLE IF NOT EXISTS tallies (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
INDEX_COLUMNS = {
    "token": "param, system, code, text",
    "string": "param, norm, exact",
    "date": "param, low, high",
    "reference": "param, target_type, target_id, literal",
    "number": "param, value",
    "quantity": "param, value, system, code",
    "uri": "param, value",
    "composite": "name, literal, state, low, high",
}
RESOURCE_COLUMNS = "r.type, r.id, r.version, r.last_updated, r.body"
POOL_SIZE = 8
SMALL_WRITE = 20  # resources a batch of puts may hold and still run on the event loop
BOUNDED_PAGE = 200  # the default page: what a search on the event loop may read at most
CACHE_KIB = 8192  # each connection's own page cache (written and recently used pages)
BUSY_WAIT = 0.0005  # first wait when another process holds the write lock; doubles up to 4 ms
BUSY_LIMIT = 30.0
OPEN_WAIT = 10.0  # seconds a new connection waits for another process setting the store up


def _connect(path: str) -> sqlite3.Connection:
    # Opening waits for a process that is switching the new file to WAL (two workers starting
    # on a fresh store); then busy_timeout 0: a busy database answers at once and `_begin`
    # waits without holding a thread.
    connection = sqlite3.connect(
        path, timeout=OPEN_WAIT, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=OFF")
    # Each connection's own page cache stays small: eight of them would each keep a copy of the
    # working set (64 MiB each made a worker 268 MiB under a search storm, 8 MiB 175 MiB, as
    # fast); the OS page cache, shared by every connection and worker, holds the file.
    connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    connection.execute("PRAGMA busy_timeout=0")
    return connection


def _version(row: tuple[Any, ...], method: str = "PUT") -> Version:
    body = orjson.loads(row[4]) if row[4] is not None else None
    return Version(row[0], row[1], row[2], row[3], body, method)


encode_cursor = cursors.encode


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The paging position: integer `seq` values and offsets only."""
    data = cursors.decode(cursor)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
        raise outcome.bad_request("Invalid paging cursor")
    return data


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker thread. A cancelled caller still waits for the thread to finish
    before the cancellation goes on: the thread holds a connection, which must not go back to
    the pool (or be closed) under it. (anyio's shield does not hold off `Task.cancel`.)"""
    work = asyncio.ensure_future(anyio.to_thread.run_sync(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


async def _when_free(attempt: Callable[[], Any]) -> None:
    """Run `attempt` until SQLite's write lock is free, sleeping between tries (not blocking)."""
    wait, give_up = BUSY_WAIT, time.monotonic() + BUSY_LIMIT
    while True:
        try:
            await attempt()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() > give_up:
                raise outcome.FhirError(
                    503, [outcome.Issue("transient", "The store is busy")]
                ) from None
            deadline.check()
        await asyncio.sleep(wait * (0.5 + random.random()))
        wait = min(wait * 2, 0.004)


class _SqliteReader(Reader):
    """Reads over one connection at a time; `_run` says how a call reaches a connection."""

    @abstractmethod
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on a connection in a worker thread."""

    @abstractmethod
    async def _run_bounded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn`, a statement whose work is bounded (a read by key, a tally, one row
        written), on the event loop itself: a thread hop costs more than the statement."""

    async def current(self, resource_type: str, resource_id: str) -> Version | None:
        row = await self._current_row(resource_type, resource_id)
        return _version(row) if row else None

    async def _current_row(self, resource_type: str, resource_id: str) -> Any:
        def read(db: sqlite3.Connection) -> Any:
            return db.execute(
                f"SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.type = ? AND r.id = ?",
                (resource_type, resource_id),
            ).fetchone()

        return await self._run_bounded(read)

    async def current_many(self, keys: list[tuple[str, str]]) -> list[Version]:
        """The keys as one JSON array: one SQL variable, however many they are."""
        if not keys:
            return []
        listed = orjson.dumps(keys).decode()
        run = self._run_bounded if len(keys) <= BOUNDED_PAGE else self._run  # reads by key
        rows = await run(
            lambda db: db.execute(
                f"SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.deleted = 0 "
                "AND (r.type, r.id) IN (SELECT json_extract(value, '$[0]'), "
                "json_extract(value, '$[1]') FROM json_each(?))",
                (listed,),
            ).fetchall()
        )
        return [_version(row) for row in rows]

    async def find(self, query: Query) -> Found:
        if _bounded(query):
            return await self._run_bounded(lambda db: _find(db, query))
        return await self._run(lambda db: _find(db, query))

    async def tallies(self, prefix: str) -> dict[str, int]:
        rows = await self._run_bounded(
            lambda db: db.execute(
                "SELECT key, value FROM tallies WHERE key >= ? AND key < ?",
                (prefix, prefix + sqlite_search.PREFIX_END),
            ).fetchall()
        )
        return dict(rows)

    async def tallies_after(self, prefix: str, after: str) -> dict[str, int]:
        rows = await self._run_bounded(
            lambda db: db.execute(
                "SELECT key, value FROM tallies WHERE key > ? AND key < ?",
                (prefix + after, prefix + sqlite_search.PREFIX_END),
            ).fetchall()
        )
        return dict(rows)


def _bounded(query: Query) -> bool:
    """A search whose work is one composite index range and its page (a schedule's slots of a
    day, an actor's appointments of a week): run on the event loop, which a thread hop costs
    more than. Anything else (sorts, totals, general conditions) goes to a thread."""
    return (
        not query.sort
        and not query.with_total
        and query.count <= BOUNDED_PAGE
        and sqlite_search.timeline_only(query.resource_type, query.matches)
    )


def _find(db: sqlite3.Connection, query: Query) -> Found:
    where, args = sqlite_search.where(query.resource_type, query.matches)
    _check_variables(db, len(args) + len(query.sort) + 3)  # and the paging ones
    total = None
    if query.with_total:
        total = db.execute(f"SELECT count(*) FROM resources r WHERE {where}", args).fetchone()[0]
    cursor = decode_cursor(query.cursor) if query.cursor else {}
    if query.sort:
        return _find_sorted(db, query, where, args, cursor, total)
    return _find_in_order(db, query, where, args, cursor, total)


def _check_variables(db: sqlite3.Connection, needed: int) -> None:
    """Refuse a search needing more SQL variables than this SQLite allows (the search caps keep
    a client far below it; an operator raising them could reach it)."""
    most = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    if needed > most:
        raise outcome.bad_request(
            f"This search needs {needed} SQL variables, more than the store allows ({most})",
            "too-costly",
        )


def _find_in_order(
    db: sqlite3.Connection,
    query: Query,
    where: str,
    args: list[Any],
    cursor: dict[str, int],
    total: int | None,
) -> Found:
    """Keyset paging on insertion order: pages never shift when resources are added."""
    backwards = "before" in cursor
    if "after" in cursor or backwards:
        where += " AND r.seq > ?" if not backwards else " AND r.seq < ?"
        args = [*args, cursor.get("after", cursor.get("before"))]
    order = "DESC" if backwards else "ASC"
    rows = db.execute(
        f"SELECT {RESOURCE_COLUMNS}, r.seq FROM resources r WHERE {where} "
        f"ORDER BY r.seq {order} LIMIT ?",
        [*args, query.count + 1],
    ).fetchall()
    more = len(rows) > query.count
    rows = rows[: query.count]
    if backwards:
        rows.reverse()
    found = Found([_version(row) for row in rows], total)
    if rows and (more or backwards):
        found.next_cursor = encode_cursor({"after": rows[-1][5]})
    if rows and ((cursor and not backwards) or (backwards and more)):
        found.previous_cursor = encode_cursor({"before": rows[0][5]})
    return found


def _find_sorted(
    db: sqlite3.Connection,
    query: Query,
    where: str,
    args: list[Any],
    cursor: dict[str, int],
    total: int | None,
) -> Found:
    """Offset paging over a snapshot: resources added after the first page are not counted."""
    snapshot = (
        cursor.get("snapshot")
        or db.execute("SELECT coalesce(max(seq), 0) FROM resources").fetchone()[0]
    )
    offset = cursor.get("offset", 0)
    order, order_args = sqlite_search.order_by(query.sort)
    rows = db.execute(
        f"SELECT {RESOURCE_COLUMNS} FROM resources r WHERE {where} AND r.seq <= ? "
        f"ORDER BY {order} LIMIT ? OFFSET ?",
        [*args, snapshot, *order_args, query.count + 1, offset],
    ).fetchall()
    found = Found([_version(row) for row in rows[: query.count]], total)
    if len(rows) > query.count:
        found.next_cursor = encode_cursor({"snapshot": snapshot, "offset": offset + query.count})
    if offset > 0:
        found.previous_cursor = encode_cursor(
            {"snapshot": snapshot, "offset": max(offset - query.count, 0)}
        )
    return found


class SqliteTransaction(_SqliteReader, Transaction):
    """Takes SQLite's write lock at its first statement, not before: whatever a caller does
    first (parse, validate) does not hold other writers up."""

    def __init__(self, connection: sqlite3.Connection, writers: asyncio.Lock) -> None:
        self._db = connection
        self._writers = writers
        self._begun = False
        # Rows read by key in this transaction, each parsed anew for its caller: under the write
        # lock nobody else changes them, and this transaction's own puts forget theirs. (A
        # booking reads its Slot five times, checking rules that each stand alone.)
        self._rows: dict[tuple[str, str], Any] = {}

    async def _current_row(self, resource_type: str, resource_id: str) -> Any:
        key = (resource_type, resource_id)
        if not self._begun or key not in self._rows:
            row = await super()._current_row(resource_type, resource_id)
            self._rows[key] = row
        return self._rows[key]

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        deadline.check()
        if self._begun:
            return await _in_thread(fn, self._db)
        return await self._begin(fn, bounded=False)

    async def _run_bounded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        deadline.check()
        if self._begun:
            return fn(self._db)
        return await self._begin(fn, bounded=True)

    async def _begin(self, fn: Callable[[sqlite3.Connection], T], bounded: bool) -> T:
        """The first statement, after BEGIN IMMEDIATE: waited for without holding a thread
        (a busy store answers at once, `busy_timeout` 0), and run on the event loop when the
        statement is bounded, as BEGIN is."""
        await self._writers.acquire()
        try:
            result: list[T] = []

            async def attempt() -> None:
                if bounded:
                    _begin_then(self._db, fn, result)
                else:
                    await _in_thread(_begin_then, self._db, fn, result)

            await _when_free(attempt)
        except BaseException:
            self._writers.release()
            raise
        self._begun = True
        return result[0]

    async def finish(self, commit: bool) -> None:
        """COMMIT (or ROLLBACK) in a thread: a commit may checkpoint the WAL into the database
        file (SQLite's auto-checkpoint, every 1000 pages), which is no work for the event loop
        (a checkpointer of our own, every second, let the WAL grow to 400 MB under bookings)."""
        if not self._begun:
            return
        statement = "COMMIT" if commit else "ROLLBACK"
        try:
            await _in_thread(self._db.execute, statement)
        finally:
            self._begun = False
            self._rows.clear()
            self._writers.release()

    async def guard(self, key: str) -> None:
        """Nothing to add: the write lock taken by the first statement serializes writers."""

    async def put(self, new: Version, index: IndexValues | None, previous: Version | None) -> None:
        self._rows.pop((new.type, new.id), None)
        await self._run_bounded(lambda db: _put(db, new, index, previous))

    async def put_new(self, new: list[tuple[Version, IndexValues]]) -> None:
        def put_all(db: sqlite3.Connection) -> None:
            for version, index in new:
                _put(db, version, index, None)

        for version, _ in new:
            self._rows.pop((version.type, version.id), None)
        await (self._run_bounded if len(new) <= SMALL_WRITE else self._run)(put_all)

    async def tally(self, key: str, delta: int) -> None:
        await self._run_bounded(
            lambda db: db.execute(
                "INSERT INTO tallies (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (key, delta),
            )
        )


def _begin_then(
    db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], result: list[T]
) -> None:
    """BEGIN IMMEDIATE and the transaction's first statement, in one trip to a thread."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result.append(fn(db))
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _put(
    db: sqlite3.Connection, new: Version, index: IndexValues | None, previous: Version | None
) -> None:
    body = orjson.dumps(new.body) if new.body is not None else None
    deleted = int(new.deleted)
    if previous is None:
        try:
            rid = db.execute(
                "INSERT INTO resources (type, id, version, last_updated, deleted, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (new.type, new.id, new.version, new.last_updated, deleted, body),
            ).lastrowid
        except sqlite3.IntegrityError:
            raise outcome.conflict(f"{new.type}/{new.id} was created concurrently") from None
    else:
        row = db.execute(
            "UPDATE resources SET version = ?, last_updated = ?, deleted = ?, body = ? "
            "WHERE type = ? AND id = ? AND version = ? RETURNING seq",
            (new.version, new.last_updated, deleted, body, new.type, new.id, previous.version),
        ).fetchone()
        if row is None:
            raise outcome.conflict(f"{new.type}/{new.id} was changed concurrently")
        rid = row[0]
        for table in sqlite_search.TABLES.values():
            db.execute(f"DELETE FROM {table} WHERE rid = ?", (rid,))
    db.execute(
        "INSERT INTO history (type, id, version, last_updated, method, body) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (new.type, new.id, new.version, new.last_updated, new.method, body),
    )
    if index is not None:
        _insert_index(db, rid, new.type, index)


def _insert_index(
    db: sqlite3.Connection, rid: int | None, resource_type: str, index: IndexValues
) -> None:
    for kind, columns in INDEX_COLUMNS.items():
        rows = getattr(index, kind)
        if rows:
            marks = ", ".join("?" for _ in range(len(rows[0]) + 1))
            db.executemany(
                f"INSERT INTO {sqlite_search.TABLES[kind]} (rid, rtype, {columns}) "
                f"VALUES (?, {marks})",
                [(rid, resource_type, *row) for row in rows],
            )


class SqliteStore(_SqliteReader, Store):
    def __init__(self, path: Path, own_base: str = "") -> None:
        self.path = path
        self.own_base = own_base
        self._pool: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        self._connections: list[sqlite3.Connection] = []
        # Queues this process's writers in order instead of letting them poll SQLite's lock;
        # atomicity and isolation still come from SQLite, across processes too.
        self._writers = asyncio.Lock()
        # One tabulation at a time in this process: each may read a day of national data, and
        # the statistics are open to anyone (the others wait, within their time budget).
        self._tabulating = asyncio.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        first = await _in_thread(_connect, str(self.path))
        schema = SCHEMA + sqlite_records.SCHEMA + sqlite_tabulation.SCHEMA
        await _when_free(lambda: _in_thread(sqlite_migrations.before_schema, first))
        await _when_free(lambda: _in_thread(first.executescript, schema))
        await _when_free(lambda: _in_thread(sqlite_migrations.after_schema, first))
        self._connections = [first] + [_connect(str(self.path)) for _ in range(POOL_SIZE - 1)]
        for connection in self._connections:
            self._pool.put_nowait(connection)

    async def clear(self) -> None:
        def empty(db: sqlite3.Connection) -> None:
            for table in ("resources", "history", "tallies", *sqlite_search.TABLES.values()):
                db.execute(f"DELETE FROM {table}")

        await self._write(empty)

    async def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections = []

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[sqlite3.Connection]:
        connection = await self._pool.get()
        try:
            yield connection
        finally:
            self._pool.put_nowait(connection)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        deadline.check()
        async with self._connection() as db:
            return await _in_thread(fn, db)

    async def _run_bounded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        deadline.check()
        async with self._connection() as db:
            return fn(db)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as db:
            transaction = SqliteTransaction(db, self._writers)
            try:
                yield transaction
            except BaseException:
                await transaction.finish(commit=False)
                raise
            await transaction.finish(commit=True)

    async def version(self, resource_type: str, resource_id: str, version: int) -> Version | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT type, id, version, last_updated, body, method FROM history "
                "WHERE type = ? AND id = ? AND version = ?",
                (resource_type, resource_id, version),
            ).fetchone()
        )
        return _version(row, row[5]) if row else None

    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        since: str | None,
        count: int,
        cursor: str | None,
    ) -> Found:
        clauses, args = ["1 = 1"], []
        for column, value in (("type", resource_type), ("id", resource_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since:
            clauses.append("last_updated >= ?")
            args.append(since)
        position = decode_cursor(cursor) if cursor else {}
        if "before" in position:
            clauses.append("hseq < ?")
            args.append(position["before"])
        sql = (
            f"SELECT type, id, version, last_updated, body, method, hseq FROM history "
            f"WHERE {' AND '.join(clauses)} ORDER BY hseq DESC LIMIT ?"
        )
        rows = await self._run(lambda db: db.execute(sql, [*args, count + 1]).fetchall())
        found = Found([_version(row, row[5]) for row in rows[:count]])
        if len(rows) > count:
            found.next_cursor = encode_cursor({"before": rows[count - 1][6]})
        return found

    async def tabulate(self, tabulation: Tabulation) -> list[Tabulated]:
        async with self._tabulating:
            return await self._run(lambda db: sqlite_tabulation.tabulate(db, tabulation))

    async def record(self, kind: str, key: str) -> dict[str, Any] | None:
        now = time.time()
        return await self._run_bounded(lambda db: sqlite_records.one(db, kind, key, now))

    async def records(self, kind: str) -> list[dict[str, Any]]:
        now = time.time()
        return await self._run(lambda db: sqlite_records.every(db, kind, now))

    async def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None:
        await self._write(lambda db: sqlite_records.put(db, kind, key, value))

    async def add_record(
        self, kind: str, key: str, value: dict[str, Any], expires_at: float
    ) -> bool:
        now = time.time()
        return await self._write(
            lambda db: sqlite_records.add(db, kind, key, value, expires_at, now)
        )

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One statement group in a write transaction of its own."""
        async with self._connection() as db:
            transaction = SqliteTransaction(db, self._writers)
            try:
                result = await transaction._run(fn)
            except BaseException:
                await transaction.finish(commit=False)
                raise
            await transaction.finish(commit=True)
            return result
