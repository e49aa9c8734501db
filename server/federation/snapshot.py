"""One publication request: who reads it, as of when and since when, and the store read page
by page for it, never all at once.

Who reads: a client with a token sees what its grants let it discover (`Access`); a request
without one is the public, which sees the owners who granted `discover` to every client (`*`),
and of their Slots those published for the public. As of when: `now` decides which Slots are in
the future and bookable. Since when: with `_since`, the files hold what changed after it, read
from `after`, a margin earlier (`overlap`, the request time budget): a write stamped just before
`_since` may commit up to its budget later, after the client's previous read, and a change
given twice does no harm where one missed would.

The Schedules are read a page at a time with the Location each is at (its first Location
actor), whose postal code gives its department. Each page of a file's stream is read under a
time budget of its own (`page_seconds`, see `paced`): a file is as long as the data, and a
client reads it at its own pace, so the request's budget would cut it off mid-file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from server.auth import labels
from server.auth.access import Access
from server.auth.caller import Caller
from server.auth.grants import EVERYONE, Grant
from server.auth.scopes import Scopes
from server.federation import departments
from server.federation.bookability import Bookability
from server.fhir.search import Match, Parser
from server.fhir.searchparams import registry
from server.fhir.values import format_instant, split_reference
from server.store import deadline
from server.store.base import Query, Store, Version

PAGE = 1000
UNBUDGETED = 60.0  # seconds of overlap when requests have no time budget
PUBLIC = Caller("anonymous", Scopes.parse("system/Location.rs system/Schedule.rs system/Slot.rs"))


async def paced(chunks: AsyncIterator[bytes], seconds: float) -> AsyncIterator[bytes]:
    """A file's chunks (a page each), each made under a time budget of its own of `seconds`."""
    while True:
        with deadline.budget(seconds):
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
        if chunk:
            yield chunk


def public(grants: list[Grant], now: str) -> Access:
    """What the public reads: the owners that opened discovery to every client, nothing more
    (a grant naming a client called "anonymous" gives the public nothing)."""
    return Access.of(PUBLIC, [g for g in grants if g.client == EVERYONE], now)


@dataclass(frozen=True)
class Placed:
    """A published Schedule, the Location it is at (if any) and that place's department."""

    schedule: Version
    location: Version | None
    department: str | None

    @property
    def body(self) -> dict[str, Any]:
        return self.schedule.body or {}


@dataclass(frozen=True)
class Snapshot:
    store: Store
    access: Access
    bookability: Bookability
    since: datetime | None = None
    page_seconds: float = 30.0  # the request time budget, given to each page (0: none)

    @property
    def overlap(self) -> timedelta:
        return timedelta(seconds=self.page_seconds or UNBUDGETED)

    @property
    def now(self) -> datetime:
        return self.bookability.now

    @property
    def own_base(self) -> str:
        return self.bookability.own_base

    @property
    def after(self) -> str | None:
        """The lastUpdated after which a change is published (None: everything is)."""
        if self.since is None:
            return None
        return format_instant(self.since - self.overlap)

    def changed(self, version: Version) -> bool:
        """Whether the version is one to publish as a change (always, without `_since`)."""
        return self.after is None or version.last_updated > self.after

    def visible(self, resource_type: str) -> list[Match]:
        hidden = self.access.search_filter(resource_type)
        return [hidden] if hidden is not None else []

    def visible_of(self, schedule: Version) -> list[Match]:
        """The condition on the Slots of one Schedule: the reader's access narrowed to the
        Schedule's owners (whose labels its Slots carry), the same rule with a few labels
        instead of one for every owner the reader may discover."""
        owners = labels.owners(schedule.body)
        access = self.access
        narrowed = replace(
            access,
            manage=access.manage & owners,
            book=access.book & owners,
            discover=access.discover & owners,
            acts_for={o: a for o, a in access.acts_for.items() if o in owners},
        )
        hidden = narrowed.search_filter("Slot")
        return [hidden] if hidden is not None else []

    async def pages(self, query: Query) -> AsyncIterator[list[Version]]:
        """Every page of the query."""
        cursor: str | None = None
        while True:
            found = await self.store.find(replace(query, cursor=cursor))
            yield found.versions
            if not found.next_cursor:
                return
            cursor = found.next_cursor

    async def placed(self) -> AsyncIterator[list[Placed]]:
        """The Schedules the reader may discover, a page at a time, with their places."""
        query = Query("Schedule", self.visible("Schedule"), count=PAGE)
        async for schedules in self.pages(query):
            wanted = {(ref or "").split("/")[1] for s in schedules if (ref := self.located(s))}
            found = await self.store.current_many([("Location", i) for i in sorted(wanted)])
            by_id = {v.id: v for v in found}
            yield [self._placed(s, by_id) for s in schedules]

    def located(self, schedule: Version) -> str | None:
        """`Location/id` of the Schedule's first Location actor."""
        for actor in (schedule.body or {}).get("actor", []):
            reference = actor.get("reference") if isinstance(actor, dict) else None
            kind, ident = split_reference(reference, self.own_base) if reference else (None, None)
            if kind == "Location":
                return f"Location/{ident}"
        return None

    def _placed(self, schedule: Version, locations: dict[str, Version]) -> Placed:
        reference = self.located(schedule)
        location = locations.get(reference.split("/")[1]) if reference else None
        department = departments.of_location(location.body) if location else None
        return Placed(schedule, location, department)


def match(resource_type: str, name: str, value: str) -> Match:
    """One search condition, as a client would write it (`start`, `gt2026-…`)."""
    param = registry().get(resource_type, name)
    if param is None:  # pragma: no cover - the names are ours
        raise LookupError(f"{resource_type} has no search parameter {name}")
    return Parser(registry()).match(param, None, value)
