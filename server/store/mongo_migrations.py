"""Bringing a database written by an earlier version of the server to the current shape.

The composite elements (`cmp`) gained the resource's status (`st`), and their index orders it
before the instant (`server.store.composite`): documents whose elements lack it get them
recomputed from their body, each update conditional on the version it read (a resource written
meanwhile already has the new shape), and the old index is dropped.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from server.fhir.indexing import COMPOSITES, extract
from server.store import mongo_records, mongo_search

Document = dict[str, Any]
MARKER_KIND = "schema-step"
OLD_COMPOSITE_INDEX = "type_1_cmp.n_1_cmp.l_1_cmp.hi_1"
BATCH = 1000


async def migrate(database: AsyncDatabase[Document], own_base: str) -> None:
    """Once per database: the step is recorded as done in the `records` collection."""
    done = {"_id": f"{MARKER_KIND}/composite-states"}
    if await database.records.find_one(done) is not None:
        return
    await _composite_states(database, own_base)
    with suppress(OperationFailure):  # never made: a new database
        await database.resources.drop_index(OLD_COMPOSITE_INDEX)
    marker = {"kind": MARKER_KIND, "key": "composite-states", "value": {}}
    await database.records.update_one(
        done, {"$set": {**marker, "expires_at": mongo_records.NEVER}}, upsert=True
    )


async def _composite_states(database: AsyncDatabase[Document], own_base: str) -> None:
    stale = {
        "type": {"$in": list(COMPOSITES)},
        "deleted": False,
        "cmp": {"$elemMatch": {"st": {"$exists": False}}},
    }
    updates: list[UpdateOne] = []
    async for document in database.resources.find(stale, {"version": 1, "body": 1}):
        elements = mongo_search.arrays(extract(document["body"], own_base))["cmp"]
        updates.append(
            UpdateOne(
                {"_id": document["_id"], "version": document["version"]},
                {"$set": {"cmp": elements}},
            )
        )
        if len(updates) == BATCH:
            await database.resources.bulk_write(updates, ordered=False)
            updates = []
    if updates:
        await database.resources.bulk_write(updates, ordered=False)
