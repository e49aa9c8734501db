"""The audit trail of one request: an AuditEvent per committed transaction, a Provenance per
booking, cancellation and reschedule, written in that same transaction.

A request's writes run in `Trail.transaction(store)`; the scheduling rules tell the trail of
each version stored (`saw`). When the transaction commits, its AuditEvent and Provenances commit
with it; when it rolls back, so do they, and the refusal is audited apart (`queue`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from server.audit.events import MAX_ENTITIES, SUCCESS, Action, audit_event
from server.audit.provenance import provenance
from server.auth import labelling, labels
from server.auth.caller import Caller
from server.fhir.values import format_instant
from server.store import writes
from server.store.base import Store, Transaction, Version

Body = dict[str, Any]
T = TypeVar("T")
TRAIL_TYPES = frozenset({"AuditEvent", "Provenance"})


@dataclass
class Trail:
    action: Action
    caller: Caller | None
    own_base: str
    clock: Callable[[], datetime]
    address: str | None = None
    _entities: list[str] = field(default_factory=list)
    _more: int = 0
    _owners: set[str] = field(default_factory=set)
    _provenances: list[Body] = field(default_factory=list)

    @asynccontextmanager
    async def transaction(
        self, store: Store, interaction: str | None = None
    ) -> AsyncIterator[Transaction]:
        """A store transaction whose commit carries this request's AuditEvent and Provenances."""
        action = replace(self.action, interaction=interaction) if interaction else self.action
        async with store.transaction() as tx:
            self._forget()
            try:
                yield tx
            except BaseException:
                self._forget()  # rolled back: none of it happened
                raise
            await self._seal(tx, action)

    async def run(self, store: Store, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """`work` through `store.run` (run again as the store says when a concurrent
        transaction won), each attempt sealed with this request's trail."""

        async def audited(tx: Transaction) -> T:
            self._forget()
            try:
                result = await work(tx)
            except BaseException:
                self._forget()
                raise
            await self._seal(tx, self.action)
            return result

        return await store.run(audited)

    async def _seal(self, tx: Transaction, action: Action) -> None:
        """The AuditEvent and Provenances, written together in one trip to the store."""
        event = labels.with_labels(
            self.event(SUCCESS, action=action), frozenset(self._owners), frozenset()
        )
        trail = [event, *self._provenances]
        self._forget()
        await writes.create_many(tx, trail, own_base=self.own_base, rules=_AS_LABELLED)

    def saw(
        self, version: Version, change: str | None = None, previous: Body | None = None
    ) -> None:
        """A version this request stored (`previous`: the live body it replaced); `change`
        (book, cancel, reschedule) for an Appointment also gets its Provenance. Both are labelled
        for the owners the version is labelled for: no store read at commit."""
        if version.type in TRAIL_TYPES:
            return
        if len(self._entities) < MAX_ENTITIES:
            self._entities.append(f"{version.type}/{version.id}/_history/{version.version}")
        else:
            self._more += 1
        owners = labels.owners(version.body if version.body is not None else previous)
        self._owners |= owners
        if change is not None and self.caller is not None:
            body = provenance(version, change, self.caller, self.recorded())
            self._provenances.append(labels.with_labels(body, owners, frozenset()))

    def _forget(self) -> None:
        self._entities, self._more = [], 0
        self._owners, self._provenances = set(), []

    def event(
        self, outcome: str, description: str | None = None, action: Action | None = None
    ) -> Body:
        """The AuditEvent of this request, with what it wrote so far (or what its path names)."""
        action = action or self.action
        entities = self._entities or _named(action)
        return audit_event(
            action,
            self.caller,
            recorded=self.recorded(),
            outcome=outcome,
            entities=entities,
            more=self._more,
            description=description,
            address=self.address,
        )

    def recorded(self) -> str:
        return format_instant(self.clock())


def _named(action: Action) -> list[str]:
    """The resource a path names (`Type/id`), when it names one."""
    return [action.target] if action.target and "/" in action.target else []


async def record(tx: Transaction, body: Body, own_base: str) -> Version:
    """Store an AuditEvent, labelled for the owners of what it is about (read from the store)."""
    return await writes.create(tx, body, own_base=own_base, rules=_Labelled(own_base))


@dataclass(frozen=True)
class _Labelled:
    """Write rules for the trail itself: owner labels from what it is about, nothing else."""

    own_base: str

    async def before(self, tx: Transaction, previous: Body | None, body: Body | None) -> Any:
        if body is None:
            return None
        return await labelling.label(tx, previous, body, "", self.own_base)

    async def after(self, tx: Transaction, previous: Body | None, version: Version) -> None:
        return None


class _AsLabelled:
    """Write rules for trail resources labelled already, from the versions they are about."""

    async def before(self, tx: Transaction, previous: Body | None, body: Body | None) -> Any:
        return body

    async def after(self, tx: Transaction, previous: Body | None, version: Version) -> None:
        return None


_AS_LABELLED = _AsLabelled()
