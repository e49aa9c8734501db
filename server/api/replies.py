"""The result of an interaction, before it becomes an HTTP response or a Bundle entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from server.store.base import Version
from server.store.writes import ANY_VERSION


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_etag(value: str | None) -> int | None:
    """The version number in an If-Match value such as `W/"3"`; None when absent;
    `ANY_VERSION` for `*`."""
    if value is None:
        return None
    if value.strip() == "*":
        return ANY_VERSION
    text = value.strip().removeprefix("W/").strip('"')
    return int(text) if text.isdecimal() else -1


def http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def version_reply(status: int, version: Version, base: str, *, location: bool = False) -> Reply:
    headers = {"ETag": etag(version.version), "Last-Modified": http_date(version.last_updated)}
    if location:
        headers["Location"] = f"{base}/{version.type}/{version.id}/_history/{version.version}"
    return Reply(status, version.body, headers)
