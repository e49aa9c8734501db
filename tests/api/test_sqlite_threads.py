"""What the embedded store does in threads: no connection goes back to the pool, or is closed,
while a thread still works on it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import suppress
from pathlib import Path

from server.store import sqlite as embedded


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
