"""The store interface: what every store must do, and nothing about how.

A store reads current versions, old versions, history and search pages; it writes only inside a
`Transaction`, which is atomic (all of it or none of it) and isolated from concurrent writers.
What is written (versions, meta, index values) is decided once, in `server.store.writes`, so the
stores only persist it.

Beside FHIR resources a store keeps *records*: small JSON documents that are not FHIR and have no
history (OAuth2 clients, signing keys, client-assertion `jti`s seen), each under a `kind` and a
`key`. A record may expire: once past its `expires_at` (Unix seconds) it is as if absent, and it
is purged when another record of its kind is added.

A store also *tabulates*: it counts resources by the codes of their tags (`Tabulation`), in the
store itself (SQL `GROUP BY` over the index rows, a MongoDB aggregation pipeline), for the open
statistics, which never load the resources they count.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from server.fhir.indexing import IndexValues
from server.fhir.search import Match, SortKey

T = TypeVar("T")


@dataclass(frozen=True)
class Version:
    """One version of one resource; `body` is None for a deletion."""

    type: str
    id: str
    version: int
    last_updated: str
    body: dict[str, Any] | None
    method: str = "PUT"

    @property
    def deleted(self) -> bool:
        return self.body is None


@dataclass(frozen=True)
class Query:
    """What a store must find: resources of one type meeting every Match, in order, one page."""

    resource_type: str
    matches: list[Match]
    sort: list[SortKey] = field(default_factory=list)
    count: int = 50
    cursor: str | None = None
    with_total: bool = False


@dataclass
class Found:
    versions: list[Version]
    total: int | None = None
    next_cursor: str | None = None
    previous_cursor: str | None = None


@dataclass(frozen=True)
class Tabulation:
    """Resources of `types` counted by the codes of their tags (`meta.tag`, as indexed for
    `_tag`), over a span of codes of one system (days, as YYYY-MM-DD: `span`, from `low` to
    `high` included).

    Each resource falls in one *cell*, its codes of the `cells` systems (a resource lacking one
    is not counted; `span` is one of them), restricted to the cells whose codes are those of
    `where` (system, code). A cell counts its resources, or, with `weight`, the sum of their
    integer codes of that system. The cells are then summed by their codes of `groups` (some of
    `cells`): in each group the total, and the sum of the cells of at least `floor` only (those
    below are withheld: a figure made of the cells that are shown only, whatever its grouping,
    can never be subtracted from another to reveal a withheld one)."""

    types: tuple[str, ...]
    span: str
    low: str
    high: str
    cells: tuple[str, ...]
    groups: tuple[str, ...]
    where: tuple[tuple[str, str], ...] = ()
    weight: str | None = None
    floor: int = 0

    def __post_init__(self) -> None:
        named = {self.span, *self.groups, *(system for system, _ in self.where)}
        if not named <= set(self.cells) or self.weight in self.cells:
            raise ValueError("span, groups and where name cell systems; weight is none of them")


@dataclass(frozen=True)
class Tabulated:
    """One group: its codes (one per `Tabulation.groups` system), the sum of its cells, and
    the sum of those of its cells of at least the floor."""

    codes: tuple[str, ...]
    total: int
    shown: int


class Reader(ABC):
    """Reads, from the committed state (a store) or from inside a transaction (its own writes)."""

    @abstractmethod
    async def current(self, resource_type: str, resource_id: str) -> Version | None:
        """The latest version (a deletion included), or None if never created."""

    @abstractmethod
    async def find(self, query: Query) -> Found:
        """One page of current, not deleted resources matching the query."""

    @abstractmethod
    async def current_many(self, keys: list[tuple[str, str]]) -> list[Version]:
        """The latest live versions of the given (type, id) pairs, those that exist."""

    @abstractmethod
    async def tallies(self, prefix: str) -> dict[str, int]:
        """The tallies whose key starts with `prefix`, by key (see `Transaction.tally`)."""

    @abstractmethod
    async def tallies_after(self, prefix: str, after: str) -> dict[str, int]:
        """The tallies whose key starts with `prefix` and sorts after `prefix + after`: one
        index range, for keys that end in an instant (the live holds: those ending after now)."""


class Transaction(Reader):
    @abstractmethod
    async def guard(self, key: str) -> None:
        """Make this transaction conflict (409) with any concurrent one guarding the same key.

        A decision taken on a search ("create only if none matches") is safe only if no other
        transaction can take the same decision at the same time; snapshot isolation alone
        lets both pass. SQLite serializes writers already; MongoDB writes a guard document."""

    @abstractmethod
    async def put(self, new: Version, index: IndexValues | None, previous: Version | None) -> None:
        """Persist `new` as the current version. Raises FhirError 409 if the current version is
        no longer `previous` (another writer got there first)."""

    async def put_new(self, new: list[tuple[Version, IndexValues]]) -> None:
        """Persist first versions of new resources together (the audit trail's writes at a
        commit); a store may do it in one trip."""
        for version, index in new:
            await self.put(version, index, None)

    @abstractmethod
    async def tally(self, key: str, delta: int) -> None:
        """Add `delta` to the named count, kept in step with the resources it summarizes by
        being written in the same transaction (the dose ledger: what a search cannot sum).
        Two concurrent transactions adding to the same tally conflict on MongoDB (409)."""


class Store(Reader):
    own_base: str = ""

    async def run(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """`work` in one transaction, run again as the store's driver says when a concurrent
        transaction won (MongoDB); on a store whose writers never conflict, once."""
        async with self.transaction() as tx:
            return await work(tx)

    @abstractmethod
    async def open(self) -> None:
        """Create tables, collections and indexes; ready the connections."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def clear(self) -> None:
        """Remove every resource, version, index value, tally and guard: an empty store, as the
        sandbox's reset wants it. Records (clients, signing keys, the paging key) are kept, so
        that tokens and links issued before stay readable."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """An atomic unit of work: committed on normal exit, rolled back on an exception."""

    @abstractmethod
    async def version(
        self, resource_type: str, resource_id: str, version: int
    ) -> Version | None: ...

    @abstractmethod
    async def history(
        self,
        resource_type: str | None,
        resource_id: str | None,
        *,
        since: str | None,
        count: int,
        cursor: str | None,
    ) -> Found:
        """Versions, newest first; of one resource, of one type, or of the whole server."""

    @abstractmethod
    async def tabulate(self, tabulation: Tabulation) -> list[Tabulated]:
        """The groups of the tabulation that have at least one cell, in no particular order;
        computed by the store, within the request's time budget (503 past it)."""

    @abstractmethod
    async def record(self, kind: str, key: str) -> dict[str, Any] | None:
        """The live record of that kind and key, or None."""

    @abstractmethod
    async def records(self, kind: str) -> list[dict[str, Any]]:
        """Every live record of one kind, in key order."""

    @abstractmethod
    async def put_record(self, kind: str, key: str, value: dict[str, Any]) -> None:
        """Insert or replace a record that never expires."""

    @abstractmethod
    async def add_record(
        self, kind: str, key: str, value: dict[str, Any], expires_at: float
    ) -> bool:
        """Insert a record only if none lives under that key (absent, or expired); False if one
        does. Atomic across processes: of two concurrent adds of one key, exactly one wins (how a
        client assertion's `jti` is refused a second time, whichever worker sees it)."""
