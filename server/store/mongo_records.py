"""Records (see `server.store.base`) on MongoDB: the `records` collection, one document per
record, `_id` "kind/key", with `kind`, `key`, `value` and `expires_at` (NEVER for a record that
does not expire, so that one range on `expires_at` tells the live ones).

`add` is one conditional upsert on the unique `_id`: it replaces the document only if it has
expired and otherwise inserts; when a live one exists the insert fails on the duplicate `_id`,
so of two concurrent adds exactly one wins, on any number of servers.
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

Document = dict[str, Any]
INDEX = [("kind", ASCENDING), ("expires_at", ASCENDING)]
NEVER = 2.0**62  # seconds: later than any real expiry


def _id(kind: str, key: str) -> str:
    return f"{kind}/{key}"


def _live(now: float) -> Document:
    return {"expires_at": {"$gt": now}}


async def one(
    records: AsyncCollection[Document], kind: str, key: str, now: float
) -> dict[str, Any] | None:
    doc = await records.find_one({"_id": {"$eq": _id(kind, key)}, **_live(now)})
    return dict(doc["value"]) if doc else None


async def every(records: AsyncCollection[Document], kind: str, now: float) -> list[dict[str, Any]]:
    docs = records.find({"kind": {"$eq": kind}, **_live(now)}).sort("key", ASCENDING)
    return [dict(doc["value"]) async for doc in docs]


async def put(
    records: AsyncCollection[Document], kind: str, key: str, value: dict[str, Any]
) -> None:
    record_id = _id(kind, key)  # in the document too: nx-27017 does not take it from `$eq`
    await records.replace_one(
        {"_id": {"$eq": record_id}},
        {"_id": record_id, "kind": kind, "key": key, "value": value, "expires_at": NEVER},
        upsert=True,
    )


async def add(
    records: AsyncCollection[Document],
    kind: str,
    key: str,
    value: dict[str, Any],
    expires_at: float,
    now: float,
) -> bool:
    """Purge the kind's expired records, then insert unless a live one holds the key."""
    await records.delete_many({"kind": {"$eq": kind}, "expires_at": {"$lte": now}})
    try:
        await records.update_one(
            {"_id": _id(kind, key), "expires_at": {"$lte": now}},
            {"$set": {"kind": kind, "key": key, "value": value, "expires_at": expires_at}},
            upsert=True,
        )
    except DuplicateKeyError:
        return False
    return True
