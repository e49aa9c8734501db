"""The conflict harness: what each store transaction read and wrote, for the proof that no two
concurrent decisions on one fact can both commit on MongoDB.

Under snapshot isolation (MongoDB) two transactions that overlap in time both commit unless they
write a common document; then the second writer is aborted and run again on fresh data. So a rule
is safe if, whenever two transactions decide on a common fact (a slot's seats, a place's doses, a
client's quota, "no such resource yet"), their *write* sets intersect. SQLite serializes writers
and is safe anyway; the sets it records are the same, since the rules decide them, not the store.

`ProbingStore` wraps the app's store. While probing, every transaction runs to its commit point,
is recorded as a `Footprint`, and is rolled back, so the next request starts from the very same
snapshot: two requests probed one after the other are two transactions from one snapshot, as two
concurrent ones would be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.fhir import outcome
from server.fhir.indexing import IndexValues
from server.store.base import Found, Query, Store, Tabulated, Tabulation, Transaction, Version

T = TypeVar("T")
Key = tuple[str, ...]  # ("resource", type, id) | ("guard", key) | ("tally", key)
TRAIL = frozenset({"AuditEvent", "Provenance"})


@dataclass
class Footprint:
    """What one transaction read (documents, tally ranges, searched types) and wrote."""

    reads: set[Key] = field(default_factory=set)
    ranges: set[str] = field(default_factory=set)  # tally prefixes read as a range
    searched: set[str] = field(default_factory=set)  # resource types read by a search
    writes: set[Key] = field(default_factory=set)
    committed: bool = False  # reached its commit point (then rolled back)

    def depends_on(self, other: Footprint) -> bool:
        """Whether `other` writes something this transaction decided on."""
        for kind, *rest in other.writes:
            if (kind, *rest) in self.reads:
                return True
            if kind == "tally" and any(rest[0].startswith(p) for p in self.ranges):
                return True
            if kind == "resource" and rest[0] in self.searched:
                return True
        return False

    def common_writes(self, other: Footprint) -> set[Key]:
        return self.writes & other.writes


class Probed(outcome.FhirError):
    """The rollback of a probed transaction, answered like any refusal."""

    def __init__(self) -> None:
        super().__init__(409, [outcome.Issue("conflict", "probed by the conflict harness")])


class _Recording(Transaction):
    def __init__(self, inner: Transaction, footprint: Footprint) -> None:
        self._inner, self._print = inner, footprint

    async def current(self, resource_type: str, resource_id: str) -> Version | None:
        self._print.reads.add(("resource", resource_type, resource_id))
        return await self._inner.current(resource_type, resource_id)

    async def find(self, query: Query) -> Found:
        self._print.searched.add(query.resource_type)
        found = await self._inner.find(query)
        self._print.reads |= {("resource", v.type, v.id) for v in found.versions}
        return found

    async def current_many(self, keys: list[tuple[str, str]]) -> list[Version]:
        self._print.reads |= {("resource", kind, key) for kind, key in keys}
        return await self._inner.current_many(keys)

    async def tallies(self, prefix: str) -> dict[str, int]:
        self._print.ranges.add(prefix)
        return await self._inner.tallies(prefix)

    async def tallies_after(self, prefix: str, after: str) -> dict[str, int]:
        self._print.ranges.add(prefix)
        return await self._inner.tallies_after(prefix, after)

    async def guard(self, key: str) -> None:
        self._print.writes.add(("guard", key))
        await self._inner.guard(key)

    async def put(self, new: Version, index: IndexValues | None, previous: Version | None) -> None:
        if new.type not in TRAIL:  # the trail's own resources are new, never shared
            self._print.writes.add(("resource", new.type, new.id))
        await self._inner.put(new, index, previous)

    async def put_new(self, new: list[tuple[Version, IndexValues]]) -> None:
        self._print.writes |= {("resource", v.type, v.id) for v, _ in new if v.type not in TRAIL}
        await self._inner.put_new(new)

    async def tally(self, key: str, delta: int) -> None:
        self._print.writes.add(("tally", key))
        await self._inner.tally(key, delta)


class ProbingStore(Store):
    """The app's store, with every transaction recorded and, while `probing`, rolled back."""

    def __init__(self, inner: Store) -> None:
        self.inner, self.own_base = inner, inner.own_base
        self.probing = False
        self.footprints: list[Footprint] = []

    async def clear(self) -> None:
        await self.inner.clear()

    async def probe(self, request: Callable[[], Awaitable[Any]]) -> Footprint:
        """The footprint of the one transaction `request` runs, rolled back."""
        self.probing, self.footprints = True, []
        try:
            response = await request()
        finally:
            self.probing = False
        count = len(self.footprints)
        assert count == 1, f"{count} transactions, not one: {getattr(response, 'text', '')}"
        return self.footprints[0]

    async def run(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        async def recorded(tx: Transaction) -> T:
            footprint = Footprint()
            result = await work(_Recording(tx, footprint))
            self._ended(footprint)
            return result

        return await self.inner.run(recorded)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.inner.transaction() as tx:
            footprint = Footprint()
            yield _Recording(tx, footprint)
            self._ended(footprint)

    def _ended(self, footprint: Footprint) -> None:
        """At the commit point: recorded, then rolled back while probing."""
        footprint.committed = True
        if self.probing:
            self.footprints.append(footprint)
            raise Probed()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def current(self, resource_type: str, resource_id: str) -> Version | None:
        return await self.inner.current(resource_type, resource_id)

    async def find(self, query: Query) -> Found:
        return await self.inner.find(query)

    async def current_many(self, keys: list[tuple[str, str]]) -> list[Version]:
        return await self.inner.current_many(keys)

    async def tallies(self, prefix: str) -> dict[str, int]:
        return await self.inner.tallies(prefix)

    async def tallies_after(self, prefix: str, after: str) -> dict[str, int]:
        return await self.inner.tallies_after(prefix, after)

    async def version(self, resource_type: str, resource_id: str, version: int) -> Version | None:
        return await self.inner.version(resource_type, resource_id, version)

    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        since: str | None,
        count: int,
        cursor: str | None,
    ) -> Found:
        return await self.inner.history(
            resource_type, resource_id, since=since, count=count, cursor=cursor
        )

    async def tabulate(self, tabulation: Tabulation) -> list[Tabulated]:
        return await self.inner.tabulate(tabulation)

    async def record(self, kind: str, key: str) -> dict[str, Any] | None:
        return await self.inner.record(kind, key)

    async def records(self, kind: str) -> list[dict[str, Any]]:
        return await self.inner.records(kind)

    async def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None:
        await self.inner.put_record(kind, key, value)

    async def add_record(
        self, kind: str, key: str, value: dict[str, Any], expires_at: float
    ) -> bool:
        return await self.inner.add_record(kind, key, value, expires_at)
