"""What the embedded store does in threads: the WAL copied into the database file by its
checkpointer (not by whichever commit crosses SQLite's threshold, on the event loop), and no
connection given back to the pool, or closed, while a thread still works on it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import suppress
from pathlib import Path

from server.fhir.indexing import IndexValues
from server.store import sqlite as embedded
from server.store.base import Version


async def test_the_wal_reaches_the_database_file_without_a_commit_copying_it(
    tmp_path: Path,
) -> None:
    store = embedded.SqliteStore(tmp_path / "store.sqlite")
    await store.open()
    try:
        for db in store._connections:
            assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        await asyncio.sleep(embedded.CHECKPOINT_SECONDS * 1.5)  # the schema's pages copied
        before = store.path.stat().st_size
        for n in range(300):
            async with store.transaction() as tx:
                body = {"resourceType": "Basic", "id": f"b{n}", "text": {"div": "x" * 2000}}
                await tx.put(Version("Basic", f"b{n}", 1, "2030-01-01", body), IndexValues(), None)
        wal = store.path.with_name(store.path.name + "-wal")
        assert wal.stat().st_size > 300 * 2000  # what the commits wrote, in the WAL only
        assert store.path.stat().st_size == before
        await asyncio.sleep(embedded.CHECKPOINT_SECONDS * 2)
        assert store.path.stat().st_size > before + 300 * 2000
    finally:
        await store.close()


async def test_a_cancelled_caller_waits_for_its_thread_to_let_go_of_the_connection(
    tmp_path: Path,
) -> None:
    store = embedded.SqliteStore(tmp_path / "store.sqlite")
    await store.open()
    finished: list[bool] = []

    def slow(db: sqlite3.Connection) -> None:
        time.sleep(0.3)
        db.execute("SELECT count(*) FROM resources").fetchone()
        finished.append(True)

    try:
        caller = asyncio.create_task(store._run(slow))
        await asyncio.sleep(0.05)
        caller.cancel()
        with suppress(asyncio.CancelledError):
            await caller
        assert finished == [True]  # the connection went back to the pool after the thread
    finally:
        await store.close()
