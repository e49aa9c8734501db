"""The store's non-FHIR records, on both stores: put, read, expire, and add-if-absent, which must
let exactly one of many concurrent adders win (jti replay, one signing key per period)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from server.app import make_store
from server.config import Settings
from server.store.base import Store


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = make_store(settings)
    await opened.open()
    yield opened
    await opened.close()


async def test_put_and_read(store: Store) -> None:
    assert await store.record("client", "a") is None
    await store.put_record("client", "b", {"name": "B"})
    await store.put_record("client", "a", {"name": "A"})
    await store.put_record("client", "a", {"name": "A2", "owners": ["Organization/1"]})
    await store.put_record("other", "a", {"name": "elsewhere"})
    assert await store.record("client", "a") == {"name": "A2", "owners": ["Organization/1"]}
    assert await store.records("client") == [
        {"name": "A2", "owners": ["Organization/1"]},
        {"name": "B"},
    ]


async def test_add_only_if_absent_or_expired(store: Store) -> None:
    now = time.time()
    assert await store.add_record("jti", "x", {"n": 1}, now + 60)
    assert not await store.add_record("jti", "x", {"n": 2}, now + 60)
    assert await store.record("jti", "x") == {"n": 1}
    assert await store.add_record("jti", "gone", {"n": 1}, now - 1)  # already expired
    assert await store.record("jti", "gone") is None
    assert await store.add_record("jti", "gone", {"n": 2}, now + 60)
    assert await store.records("jti") == [{"n": 2}, {"n": 1}]


async def test_put_records_never_expire_and_are_not_replaced_by_add(store: Store) -> None:
    await store.put_record("client", "kept", {"n": 1})
    assert not await store.add_record("client", "kept", {"n": 2}, time.time() + 60)
    assert await store.record("client", "kept") == {"n": 1}


async def test_concurrent_adds_one_winner(settings: Settings, store: Store) -> None:
    other = make_store(settings)  # a second worker process's store, on the same data
    await other.open()
    try:
        until = time.time() + 60
        results = await asyncio.gather(
            *(
                s.add_record("jti", "same", {"i": i}, until)
                for i, s in enumerate([store, other] * 4)
            )
        )
    finally:
        await other.close()
    assert sorted(results) == [False] * 7 + [True]
