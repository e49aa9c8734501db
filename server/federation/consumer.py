"""One poll of one source: read its manifest and files, keep its Locations, Schedules and
Slots in step with them.

    manifest   GET with If-None-Match / If-Modified-Since: 304 is "unchanged", nothing read
    files      Locations, then Schedules, then Slots (a Slot's Schedule must be stored first),
               streamed a line at a time and written a batch of `BATCH` lines a transaction;
               a line equal to what is held is not written again
    refused    a line that is not valid (`remote_lines.problem`), or that the store's rules
               refuse, is counted and reported with its reason, and what was held from it is
               kept: never a partial write, never a deletion because of a bad line
    removed    once every file was read in full, what the source held before and no longer
               lists (Slots first, then Schedules, then Locations) is deleted; a file that
               could not be read removes nothing this time

The HTTP client is given (`httpx.AsyncClient`): tests run it against real loopback servers.
Writes go through the scheduling rules as the server's own admin client (`server_rules`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import httpx
import orjson

from server.auth import remote
from server.auth.access import Access
from server.auth.caller import Caller
from server.auth.scopes import Scopes
from server.federation import remote_lines
from server.federation.snapshot import match
from server.federation.sources import Source, Status
from server.fhir import outcome
from server.limits import Limits
from server.scheduling.policy import Policy
from server.scheduling.rules import SchedulingRules
from server.store import writes
from server.store.base import Query, Store, Transaction

FEDERATION_CLIENT = "creneau-federation"
BATCH = 500
MIN_INTERVAL = 60.0  # seconds between two polls of a source, whatever its headers say
MAX_BACKOFF = 3600.0
REPORTED = 100  # refused lines kept in the status, the first ones
PAGE = 1000

Body = dict[str, Any]


def server_rules(policy: Policy, own_base: str, limits: Limits) -> SchedulingRules:
    """The rules remote resources are written by: the server's own admin client, unaudited
    (each poll's outcome is its source's status)."""
    caller = Caller(FEDERATION_CLIENT, Scopes.parse("system/*.cruds"), admin=True)
    return SchedulingRules(policy, Access(caller), own_base, None, limits=limits)


class Unreadable(Exception):
    """A manifest or a file that could not be read in full."""


@dataclass
class Poll:
    """What one poll saw: the local ids of every line with an id, valid or not, by type."""

    source: Source
    status: Status
    seen: dict[str, set[str]] = field(
        default_factory=lambda: {k: set() for k in remote_lines.KINDS}
    )
    complete: bool = True

    def refuse(self, where: str, line: int, reason: str) -> None:
        self.status.refused_count += 1
        if len(self.status.refused) < REPORTED:
            self.status.refused.append({"file": where, "line": line, "reason": reason})

    def took(self, kind: str, count: int) -> None:
        self.status.taken[kind] = self.status.taken.get(kind, 0) + count


async def poll(
    store: Store, http: httpx.AsyncClient, rules: SchedulingRules, source: Source, before: Status
) -> Status:
    """Poll the source once, whatever its schedule; the status to keep."""
    now = rules.policy.now()
    fresh = Status(last_poll=now.isoformat(), etag=before.etag, modified=before.modified)
    try:
        manifest, max_age = await _manifest(http, source.url, before, fresh)
    except Unreadable as error:
        return _failed(before, fresh, str(error), now)
    if manifest is None:
        return replace(
            before,
            last_poll=fresh.last_poll,
            outcome="unchanged",
            failures=0,
            next_poll=now.timestamp() + max_age,
        )
    state = Poll(source, fresh)
    for kind, url in _outputs(manifest):
        try:
            await _file(store, http, rules, state, kind, url)
        except Unreadable as error:
            state.complete, fresh.error = False, str(error)
    if not state.complete:
        return _failed(before, fresh, fresh.error or "", now)
    fresh.removed = await _remove_unlisted(store, rules, state)
    fresh.outcome, fresh.next_poll = "ok", now.timestamp() + max_age
    return fresh


def _failed(before: Status, fresh: Status, error: str, now: datetime) -> Status:
    """A failed poll: the error, and the next try backed off (one minute, doubling)."""
    failures = before.failures + 1
    wait = min(MIN_INTERVAL * 2 ** (failures - 1), MAX_BACKOFF)
    return replace(
        fresh,
        outcome="failed",
        error=error[:500],
        failures=failures,
        next_poll=now.timestamp() + wait,
        etag=before.etag,
        modified=before.modified,
    )


async def _manifest(
    http: httpx.AsyncClient, url: str, before: Status, fresh: Status
) -> tuple[Body | None, float]:
    """The manifest (None when unchanged since the last poll) and the seconds until the next."""
    headers = {"Accept": "application/json"}
    if before.etag and before.outcome in ("ok", "unchanged"):
        headers["If-None-Match"] = before.etag
    if before.modified and before.outcome in ("ok", "unchanged"):
        headers["If-Modified-Since"] = before.modified
    try:
        answer = await http.get(url, headers=headers)
    except httpx.HTTPError as error:
        raise Unreadable(f"manifest: {type(error).__name__}: {error}") from None
    max_age = _max_age(answer.headers.get("cache-control", ""))
    if answer.status_code == 304:
        return None, max_age
    if answer.status_code != 200:
        raise Unreadable(f"manifest: HTTP {answer.status_code}")
    try:
        manifest = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        raise Unreadable("manifest: not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
        raise Unreadable("manifest: no output array")
    fresh.etag = answer.headers.get("etag")
    fresh.modified = answer.headers.get("last-modified")
    return manifest, max_age


def _max_age(cache_control: str) -> float:
    """The polling interval the publisher asks for, at least a minute."""
    for part in cache_control.split(","):
        key, _, value = part.strip().partition("=")
        if key.lower() in ("max-age", "s-maxage") and value.strip('"').isdigit():
            return max(MIN_INTERVAL, float(value.strip('"')))
    return MIN_INTERVAL


def _outputs(manifest: Body) -> list[tuple[str, str]]:
    """(type, url) of the files to read, Locations first, then Schedules, then Slots."""
    found = [
        (o["type"], o["url"])
        for o in manifest["output"]
        if isinstance(o, dict)
        and o.get("type") in remote_lines.KINDS
        and isinstance(o.get("url"), str)
    ]
    return sorted(found, key=lambda pair: remote_lines.KINDS.index(pair[0]))


async def _lines(http: httpx.AsyncClient, url: str) -> AsyncIterator[str]:
    try:
        async with http.stream("GET", url, headers={"Accept": "application/fhir+ndjson"}) as answer:
            if answer.status_code != 200:
                raise Unreadable(f"{url}: HTTP {answer.status_code}")
            async for line in answer.aiter_lines():
                yield line
    except httpx.HTTPError as error:
        raise Unreadable(f"{url}: {type(error).__name__}: {error}") from None


async def _file(
    store: Store, http: httpx.AsyncClient, rules: SchedulingRules, state: Poll, kind: str, url: str
) -> None:
    batch: list[tuple[int, Body]] = []
    number = 0
    async for text in _lines(http, url):
        number += 1
        if not text.strip():
            continue
        body = _accepted(state, kind, url, number, text)
        if body is not None:
            batch.append((number, body))
        if len(batch) >= BATCH:
            await _write(store, rules, state, url, batch)
            batch = []
    if batch:
        await _write(store, rules, state, url, batch)


def _accepted(state: Poll, kind: str, url: str, number: int, text: str) -> Body | None:
    """The line as it is to be stored, or None (refused, and reported)."""
    try:
        line = orjson.loads(text)
    except orjson.JSONDecodeError:
        state.refuse(url, number, "not JSON")
        return None
    name = state.source.name
    if (
        isinstance(line, dict)
        and isinstance(line.get("id"), str)
        and remote_lines.ID.match(line["id"])
    ):
        state.seen[kind].add(remote_lines.local_id(name, line["id"]))  # held, valid or not
    reason = remote_lines.problem(line, kind)
    schedules = state.seen["Schedule"]
    if reason is None and kind == "Slot" and remote_lines.schedule_of(line, name) not in schedules:
        reason = "its Schedule is not in the publication"
        state.seen["Slot"].discard(remote_lines.local_id(name, line["id"]))  # goes with it
    if reason is not None:
        state.refuse(url, number, reason)
        return None
    return remote_lines.localized(line, name, state.source.url)


async def _write(
    store: Store, rules: SchedulingRules, state: Poll, url: str, batch: list[tuple[int, Body]]
) -> None:
    """The batch in one transaction; if the store's rules refuse a line, line by line."""
    try:
        state.took(batch[0][1]["resourceType"], await store.run(_storing(rules, batch)))
    except Exception:  # a line the store or its rules refuse: find which, line by line
        for number, body in batch:
            try:
                state.took(body["resourceType"], await store.run(_storing(rules, [(number, body)])))
            except Exception as error:  # never crashes the poll; what was held stays
                reason = str(error) if isinstance(error, outcome.FhirError) else repr(error)
                state.refuse(url, number, f"refused by this server: {reason}"[:300])


def _storing(rules: SchedulingRules, batch: list[tuple[int, Body]]) -> Any:
    async def work(tx: Transaction) -> int:
        kind = batch[0][1]["resourceType"]
        held = await tx.current_many([(kind, body["id"]) for _, body in batch])
        bodies = {v.id: v.body for v in held}
        for _, body in batch:
            if not _same(bodies.get(body["id"]), body):
                await writes.update(tx, body, body["id"], own_base=rules.own_base, rules=rules)
        return len(batch)

    return work


def _same(held: Body | None, body: Body) -> bool:
    """Whether the stored body says what the line says (meta aside: versions, labels, tags)."""
    if held is None:
        return False
    return {k: v for k, v in held.items() if k != "meta"} == {
        k: v for k, v in body.items() if k != "meta"
    }


async def _remove_unlisted(store: Store, rules: SchedulingRules, state: Poll) -> int:
    removed = 0
    for kind in reversed(remote_lines.KINDS):
        gone = [
            i async for i in held_ids(store, kind, state.source.name) if i not in state.seen[kind]
        ]
        removed += await delete(store, rules, kind, gone)
    return removed


async def held_ids(store: Store, kind: str, name: str) -> AsyncIterator[str]:
    """The ids of the resources of one type held from the source `name`."""
    tagged = match(kind, "_tag", f"{remote.SOURCE}|{name}")
    cursor: str | None = None
    while True:
        found = await store.find(Query(kind, [tagged], count=PAGE, cursor=cursor))
        for version in found.versions:
            yield version.id
        if not found.next_cursor:
            return
        cursor = found.next_cursor


async def delete(store: Store, rules: SchedulingRules, kind: str, ids: list[str]) -> int:
    """Delete these resources, a batch a transaction; how many were."""
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]

        async def work(tx: Transaction, chunk: list[str] = chunk) -> None:
            for ident in chunk:
                await writes.delete(tx, kind, ident, rules=rules)

        await store.run(work)
    return len(ids)


async def forget(store: Store, rules: SchedulingRules, name: str) -> int:
    """Delete everything held from the source `name` (when it is removed)."""
    removed = 0
    for kind in reversed(remote_lines.KINDS):
        removed += await delete(store, rules, kind, [i async for i in held_ids(store, kind, name)])
    return removed
