"""The scale-out store: MongoDB through PyMongo's asyncio API (a replica set, for transactions).

`resources` holds one document per resource, its current version: the body beside its search
index values, one array per kind (see `mongo_search`); its ObjectId `_id` is the insertion order
that paging follows, like SQLite's `seq`. `history` holds every version. Writes run in
multi-document transactions; each update is conditional on the version it replaces, the
optimistic lock behind If-Match and "claim this slot only if still free". A write conflict
between concurrent transactions becomes a 409, never a 500.

Indexes on `resources`, and the searches they serve:
    (type, id) unique                read, and no two creates of one id
    (type, deleted, _id)             a type's listing, keyset paging, sorted-search snapshots
    (type, cmp.n, cmp.l, cmp.st, cmp.lo)
                                     Slot by schedule+status+start and Appointment by
                                     actor+status+date: one range per reference and status
                                     (`composite`)
    (type, ref.p, ref.ri)            Schedule by actor, chains, _revinclude
    (type, tok.p, tok.c)             identifier, status, _id (what `_has` resolves to)
    (type, date.p, date.lo)          date ranges nothing more selective narrows
    (type, str.p, str.n)             name prefixes
    (type, uri.p, uri.v)             canonical urls
    (ref.ri, ref.rt)                 who refers to a resource, whatever their type
and on `history`: (type, id, version) unique for vread, (type, _id) for a type's history.
`guards` holds one document per guarded key (see `Transaction.guard`) and `tallies` one count per
key (see `Transaction.tally`); both are keyed by `_id`. `records` holds the non-FHIR records
(see `mongo_records`). The open statistics aggregate the `_tag` elements of `tok` in one pipeline
(`mongo_tabulation`), served by (type, tok.p, tok.c) for its window of days.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from server.fhir import outcome
from server.fhir.indexing import IndexValues
from server.store import (
    cursors,
    deadline,
    mongo_migrations,
    mongo_records,
    mongo_search,
    mongo_tabulation,
)
from server.store.base import (
    Found,
    Query,
    Reader,
    Store,
    T,
    Tabulated,
    Tabulation,
    Transaction,
    Version,
)

Document = dict[str, Any]
Collection = AsyncCollection[Document]
Session = AsyncClientSession | None

RESOURCE_INDEXES: list[tuple[list[str], bool]] = [
    (["type", "id"], True),
    (["type", "deleted", "_id"], False),
    (["type", "ref.p", "ref.ri"], False),
    (["type", "tok.p", "tok.c"], False),
    (["type", "date.p", "date.lo"], False),
    (["type", "str.p", "str.n"], False),
    (["type", "uri.p", "uri.v"], False),
    (["ref.ri", "ref.rt"], False),
    (["type", "cmp.n", "cmp.l", "cmp.st", "cmp.lo"], False),
]
HISTORY_INDEXES: list[tuple[list[str], bool]] = [
    (["type", "id", "version"], True),
    (["type", "_id"], False),
]
PROJECTION = {"type": 1, "id": 1, "version": 1, "last_updated": 1, "body": 1}
DEFAULT_DATABASE = "creneau"
WRITE_CONFLICT = 112
TRANSIENT = "TransientTransactionError"
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"
COMMIT_ATTEMPTS = 5
# Every transaction reads one snapshot and commits only once a majority has its writes.
SNAPSHOT, MAJORITY = ReadConcern("snapshot"), WriteConcern("majority")
NO_ID = ObjectId("0" * 24)
CURSOR_IDS = ("after", "before", "snapshot")
MAX_OFFSET = 2**63 - 1


def exactly(**fields: Any) -> Document:
    """An equality filter written with `$eq`: the same meaning on MongoDB, and nx-27017 (the test
    server) otherwise misses strings that look like numbers, such as the id "1"."""
    return {name: {"$eq": value} for name, value in fields.items()}


def _version(doc: Document, method: str = "PUT") -> Version:
    return Version(doc["type"], doc["id"], doc["version"], doc["last_updated"], doc["body"], method)


encode_cursor = cursors.encode


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The paging position: ObjectIds under `after`/`before`/`snapshot`, an int `offset`."""
    data = cursors.decode(cursor)
    return {key: _cursor_value(key, value) for key, value in data.items()}


def _cursor_value(key: str, value: Any) -> ObjectId | int:
    if key in CURSOR_IDS and isinstance(value, str) and ObjectId.is_valid(value):
        return ObjectId(value)
    if key == "offset" and type(value) is int and 0 <= value <= MAX_OFFSET:
        return value
    raise outcome.bad_request("Invalid paging cursor")


@contextmanager
def _conflicts() -> Iterator[None]:
    """A write conflict between concurrent transactions is a 409: the client may retry."""
    try:
        yield
    except OperationFailure as error:
        if error.code == WRITE_CONFLICT or error.has_error_label(TRANSIENT):
            raise outcome.conflict("A concurrent change got there first; retry") from error
        raise


async def _commit(session: AsyncClientSession) -> None:
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as error:
            if not error.has_error_label(UNKNOWN_COMMIT) or attempt + 1 == COMMIT_ATTEMPTS:
                raise


class _MongoReader(Reader):
    """Reads from the committed state, or from inside a transaction when `_session` is one."""

    _session: Session = None

    def _db(self) -> AsyncDatabase[Document]:
        raise NotImplementedError

    async def current(self, resource_type: str, resource_id: str) -> Version | None:
        doc = await self._db().resources.find_one(
            exactly(type=resource_type, id=resource_id), PROJECTION, session=self._session
        )
        return _version(doc) if doc else None

    async def current_many(self, keys: list[tuple[str, str]]) -> list[Version]:
        if not keys:
            return []
        ids: dict[str, list[str]] = {}
        for resource_type, resource_id in keys:
            ids.setdefault(resource_type, []).append(resource_id)
        wanted = [{"type": t, "id": {"$in": i}} for t, i in ids.items()]
        docs = (
            self._db()
            .resources.find({"deleted": False, "$or": wanted}, PROJECTION, session=self._session)
            .sort("_id", ASCENDING)
        )
        return [_version(doc) async for doc in docs]

    async def find(self, query: Query) -> Found:
        return await _find(self._db().resources, self._session, query)

    async def tallies(self, prefix: str) -> dict[str, int]:
        docs = self._db().tallies.find(
            {"_id": {"$gte": prefix, "$lt": prefix + mongo_search.PREFIX_END}},
            session=self._session,
        )
        return {doc["_id"]: doc["value"] async for doc in docs}

    async def tallies_after(self, prefix: str, after: str) -> dict[str, int]:
        docs = self._db().tallies.find(
            {"_id": {"$gt": prefix + after, "$lt": prefix + mongo_search.PREFIX_END}},
            session=self._session,
        )
        return {doc["_id"]: doc["value"] async for doc in docs}


async def _find(resources: Collection, session: Session, query: Query) -> Found:
    cursor = decode_cursor(query.cursor) if query.cursor else {}
    match = mongo_search.where(query.resource_type, query.matches)
    total = await resources.count_documents(match, session=session) if query.with_total else None
    if query.sort:
        return await _find_sorted(resources, session, query, match, cursor, total)
    return await _find_in_order(resources, session, query, match, cursor, total)


async def _find_in_order(
    resources: Collection,
    session: Session,
    query: Query,
    match: Document,
    cursor: dict[str, Any],
    total: int | None,
) -> Found:
    """Keyset paging on insertion order: pages never shift when resources are added."""
    backwards = "before" in cursor
    if "after" in cursor or backwards:
        position = cursor.get("after", cursor.get("before"))
        match = {**match, "_id": {"$lt" if backwards else "$gt": position}}
    docs = (
        await resources.find(match, PROJECTION, session=session)
        .sort("_id", DESCENDING if backwards else ASCENDING)
        .limit(query.count + 1)
        .to_list()
    )
    more = len(docs) > query.count
    docs = docs[: query.count]
    if backwards:
        docs.reverse()
    found = Found([_version(doc) for doc in docs], total)
    if docs and (more or backwards):
        found.next_cursor = encode_cursor({"after": str(docs[-1]["_id"])})
    if docs and ((cursor and not backwards) or (backwards and more)):
        found.previous_cursor = encode_cursor({"before": str(docs[0]["_id"])})
    return found


async def _find_sorted(
    resources: Collection,
    session: Session,
    query: Query,
    match: Document,
    cursor: dict[str, Any],
    total: int | None,
) -> Found:
    """Offset paging over a snapshot: resources added after the first page are not counted.
    The snapshot is applied by leaving out the (few) newer matches rather than by an `_id` range
    in the pipeline, which nx-27017 cannot evaluate (it compares no ObjectId in `aggregate`)."""
    snapshot = cursor["snapshot"] if "snapshot" in cursor else await _last_id(resources, session)
    offset = cursor.get("offset", 0)
    newer = {
        doc["_id"]
        async for doc in resources.find(
            {**match, "_id": {"$gt": snapshot}}, {"_id": 1}, session=session
        )
    }
    stages = mongo_search.sort_stages(match, query.sort, offset + query.count + 1 + len(newer))
    ordered = [doc["_id"] async for doc in await resources.aggregate(stages, session=session)]
    ids = [i for i in ordered if i not in newer][offset:]
    docs = (
        await resources.find(
            {"_id": {"$in": ids[: query.count]}}, PROJECTION, session=session
        ).to_list()
        if query.count and ids
        else []
    )
    by_id = {doc["_id"]: doc for doc in docs}
    found = Found([_version(by_id[i]) for i in ids[: query.count] if i in by_id], total)
    if len(ids) > query.count:
        found.next_cursor = encode_cursor(
            {"snapshot": str(snapshot), "offset": offset + query.count}
        )
    if offset > 0:
        found.previous_cursor = encode_cursor(
            {"snapshot": str(snapshot), "offset": max(offset - query.count, 0)}
        )
    return found


async def _last_id(resources: Collection, session: Session) -> ObjectId:
    last = await resources.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)], session=session)
    return last["_id"] if last else NO_ID


class MongoTransaction(_MongoReader, Transaction):
    """Every read and write of one transaction, over its session."""

    def __init__(self, database: AsyncDatabase[Document], session: AsyncClientSession) -> None:
        self._database = database
        self._session = session

    def _db(self) -> AsyncDatabase[Document]:
        deadline.check()
        return self._database

    async def guard(self, key: str) -> None:
        """Write the guard document: two transactions writing the same document conflict, and
        MongoDB aborts one of them (a write conflict, answered 409)."""
        with _conflicts():
            await self._database.guards.update_one(
                exactly(_id=key), {"$inc": {"uses": 1}}, upsert=True, session=self._session
            )

    async def tally(self, key: str, delta: int) -> None:
        with _conflicts():
            await self._database.tallies.update_one(
                exactly(_id=key), {"$inc": {"value": delta}}, upsert=True, session=self._session
            )

    async def put(self, new: Version, index: IndexValues | None, previous: Version | None) -> None:
        fields = {
            "version": new.version,
            "last_updated": new.last_updated,
            "deleted": new.deleted,
            "body": new.body,
            **mongo_search.arrays(index),
        }
        with _conflicts():
            if previous is None:
                await self._insert(new, fields)
            else:
                await self._update(new, fields, previous)
            await self._database.history.insert_one(
                {
                    "type": new.type,
                    "id": new.id,
                    "version": new.version,
                    "last_updated": new.last_updated,
                    "method": new.method,
                    "body": new.body,
                },
                session=self._session,
            )

    async def _insert(self, new: Version, fields: Document) -> None:
        try:
            await self._database.resources.insert_one(
                {"type": new.type, "id": new.id, **fields}, session=self._session
            )
        except DuplicateKeyError:
            raise outcome.conflict(f"{new.type}/{new.id} was created concurrently") from None

    async def _update(self, new: Version, fields: Document, previous: Version) -> None:
        result = await self._database.resources.update_one(
            exactly(type=new.type, id=new.id, version=previous.version),
            {"$set": fields},
            session=self._session,
        )
        if result.matched_count == 0:
            raise outcome.conflict(f"{new.type}/{new.id} was changed concurrently")


async def _is_test_server(database: AsyncDatabase[Document]) -> bool:
    info = await database.client.admin.command("buildInfo")
    return bool(info.get("process") == "nx_27017")


async def _create_indexes(database: AsyncDatabase[Document], test_server: bool) -> None:
    """The collections, then the indexes. Indexes only speed searches up; none changes an
    answer. nx-27017, the test server, cannot evaluate a compound index over `_id` (every later
    insert fails), so there it goes without."""
    existing = set(await database.list_collection_names())
    for name in ("resources", "history", "guards", "tallies", "records"):
        if name not in existing:  # created up front: transactions only write to them
            with suppress(CollectionInvalid):  # another worker created it first
                await database.create_collection(name)
    for collection, indexes in (
        (database.resources, RESOURCE_INDEXES),
        (database.history, HISTORY_INDEXES),
    ):
        for fields, unique in indexes:
            if not (test_server and "_id" in fields):
                await collection.create_index([(f, ASCENDING) for f in fields], unique=unique)
    await database.records.create_index(mongo_records.INDEX)


class MongoStore(_MongoReader, Store):
    def __init__(self, uri: str, database: str | None = None, own_base: str = "") -> None:
        self.uri = uri
        self.database_name = database
        self.own_base = own_base
        self._client: AsyncMongoClient[Document] | None = None
        self._database: AsyncDatabase[Document] | None = None
        self._snapshot = SNAPSHOT
        # One tabulation at a time from this process: the statistics are open to anyone.
        self._tabulating = asyncio.Lock()

    async def open(self) -> None:
        client: AsyncMongoClient[Document] = AsyncMongoClient(self.uri, tz_aware=False)
        database = (
            client[self.database_name]
            if self.database_name
            else client.get_default_database(DEFAULT_DATABASE)
        )
        test_server = await _is_test_server(database)
        await mongo_migrations.migrate(database, self.own_base)
        await _create_indexes(database, test_server)
        if test_server:
            # nx-27017 isolates no transaction, and stores the `readConcern` of a transaction
            # that opens with an insert as one more inserted document: it is not sent there.
            self._snapshot = ReadConcern()
        self._client, self._database = client, database

    async def clear(self) -> None:
        database = self._db()
        for name in ("resources", "history", "guards", "tallies"):
            await database[name].delete_many({})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = self._database = None

    def _db(self) -> AsyncDatabase[Document]:
        if self._database is None:
            raise RuntimeError("MongoStore is not open")
        deadline.check()
        return self._database

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One attempt; a commit whose result is unknown is retried as the driver would (a
        commit is idempotent), so a change that committed is never answered as a failure."""
        database = self._db()
        async with database.client.start_session() as session:
            with _conflicts():
                await session.start_transaction(self._snapshot, MAJORITY)
                try:
                    yield MongoTransaction(database, session)
                except BaseException:
                    if session.in_transaction:
                        await session.abort_transaction()
                    raise
                await _commit(session)

    async def run(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """PyMongo's `with_transaction`: the whole transaction again on a transient error (a
        write conflict with a concurrent one), the commit again when its result is unknown."""
        database = self._db()

        async def attempt(session: AsyncClientSession) -> T:
            try:
                return await work(MongoTransaction(database, session))
            except outcome.FhirError as error:
                cause = error.__cause__
                if isinstance(cause, PyMongoError) and cause.has_error_label(TRANSIENT):
                    raise cause from None  # the driver's to retry
                raise

        async with database.client.start_session() as session:
            with _conflicts():
                return await session.with_transaction(attempt, self._snapshot, MAJORITY)

    async def version(self, resource_type: str, resource_id: str, version: int) -> Version | None:
        doc = await self._db().history.find_one(
            exactly(type=resource_type, id=resource_id, version=version)
        )
        return _version(doc, doc["method"]) if doc else None

    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        since: str | None,
        count: int,
        cursor: str | None,
    ) -> Found:
        match: Document = {}
        for field, value in (("type", resource_type), ("id", resource_id)):
            if value is not None:
                match[field] = value
        if since:
            match["last_updated"] = {"$gte": since}
        position = decode_cursor(cursor) if cursor else {}
        if "before" in position:
            match["_id"] = {"$lt": position["before"]}
        docs = (
            await self._db().history.find(match).sort("_id", DESCENDING).limit(count + 1).to_list()
        )
        found = Found([_version(doc, doc["method"]) for doc in docs[:count]])
        if len(docs) > count:
            found.next_cursor = encode_cursor({"before": str(docs[count - 1]["_id"])})
        return found

    async def tabulate(self, tabulation: Tabulation) -> list[Tabulated]:
        """The pipeline of `mongo_tabulation`, outside any transaction, spilling to disk if a
        long window's cells outgrow MongoDB's in-memory limit for `$group`."""
        width = len(tabulation.groups)
        async with self._tabulating:
            pipeline = mongo_tabulation.stages(tabulation)
            docs = await self._db().resources.aggregate(pipeline, allowDiskUse=True)
            return [mongo_tabulation.tabulated(doc, width) async for doc in docs]

    async def record(self, kind: str, key: str) -> dict[str, Any] | None:
        return await mongo_records.one(self._db().records, kind, key, time.time())

    async def records(self, kind: str) -> list[dict[str, Any]]:
        return await mongo_records.every(self._db().records, kind, time.time())

    async def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None:
        await mongo_records.put(self._db().records, kind, key, value)

    async def add_record(
        self, kind: str, key: str, value: dict[str, Any], expires_at: float
    ) -> bool:
        return await mongo_records.add(
            self._db().records, kind, key, value, expires_at, time.time()
        )
