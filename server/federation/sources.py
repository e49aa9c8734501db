"""The publishers this server aggregates: their registration and the status of their last poll,
kept as store records (`SOURCE` and `STATUS` kinds, keyed by the source's name).

A source is a name (lowercase letters, digits and `-`, at most 16: it prefixes the local ids of
its resources) and the URL of its SMART Scheduling Links manifest (`$bulk-publish`). Records
have no deletion: a removed source stays as a record marked `removed`, which a new source of
the same name replaces.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from server.fhir import outcome
from server.store.base import Store

SOURCE = "federation-source"
STATUS = "federation-status"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    added: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Status:
    """What the last poll did, and when the next one is due (Unix seconds)."""

    last_poll: str | None = None
    outcome: str = "never"  # never, ok, unchanged, failed
    error: str | None = None
    taken: dict[str, int] = field(default_factory=dict)  # lines stored, by resource type
    refused: list[dict[str, Any]] = field(default_factory=list)  # {file, line, reason}, the first
    refused_count: int = 0
    removed: int = 0
    failures: int = 0  # polls failed in a row (the backoff)
    next_poll: float = 0.0
    etag: str | None = None  # of the manifest, for If-None-Match
    modified: str | None = None  # its Last-Modified, for If-Modified-Since

    @classmethod
    def of(cls, record: dict[str, Any] | None) -> Status:
        return cls(**record) if record else cls()

    def public(self) -> dict[str, Any]:
        return asdict(self)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise outcome.bad_request(f"A source is the http(s) URL of a manifest, not {url[:80]!r}")
    return url


def name_of(url: str, name: str | None) -> str:
    """The name given, checked, or one made from the URL's host."""
    if name is None:
        host = urlsplit(url).netloc.lower()
        name = re.sub(r"[^a-z0-9]+", "-", host).strip("-")[:16].rstrip("-") or "source"
    if not NAME.match(name):
        raise outcome.bad_request(
            f"A source name is 1 to 16 lowercase letters, digits or '-', not {name[:40]!r}"
        )
    return name


async def add(store: Store, *, url: str, name: str | None, now: str) -> Source:
    source = Source(name_of(url, name), check_url(url), now)
    if _live(await store.record(SOURCE, source.name)):
        raise outcome.conflict(f"A source named {source.name!r} is registered already")
    await store.put_record(SOURCE, source.name, source.public())
    await store.put_record(STATUS, source.name, Status().public())
    return source


async def get_or_raise(store: Store, name: str) -> Source:
    found = await store.record(SOURCE, name)
    if not _live(found):
        raise outcome.not_found(f"No source named {name[:40]!r}")
    return _source(found)


async def list_all(store: Store) -> list[Source]:
    return [_source(found) for found in await store.records(SOURCE) if _live(found)]


async def remove(store: Store, source: Source, now: str) -> None:
    """Mark the registration removed (its resources are deleted by `consumer.forget`)."""
    await store.put_record(SOURCE, source.name, {**source.public(), "removed": now})


async def status(store: Store, name: str) -> Status:
    return Status.of(await store.record(STATUS, name))


async def save_status(store: Store, name: str, current: Status) -> None:
    await store.put_record(STATUS, name, current.public())


def _live(record: dict[str, Any] | None) -> bool:
    return record is not None and not record.get("removed")


def _source(record: dict[str, Any] | None) -> Source:
    found = record or {}
    return Source(found["name"], found["url"], found["added"])
