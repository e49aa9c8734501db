"""The embedded store's WAL is copied into the database file by the store's checkpointer, in a
thread, not by whichever commit crosses SQLite's threshold on the event loop."""

from __future__ import annotations

import asyncio
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
