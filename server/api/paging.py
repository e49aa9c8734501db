"""Paging cursors the server signs and binds to their search.

A `next` or `previous` link carries the store's position in `_cursor`, followed by an HMAC over
that position and the link's other parameters. A cursor changed by hand, or sent with another
search than the one it was made for, is refused (400) instead of answering a page nobody asked
for. The key is the store's (a record every worker reads), so any worker accepts any worker's
cursors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlencode

from server.fhir import outcome
from server.store.base import Store

KIND, KEY_ID = "paging-key", "current"
NEVER = 2**62  # the key record does not expire
SEPARATOR = "."


async def load_key(store: Store) -> bytes:
    """The store's paging key, made by the first worker to start (the others read it)."""
    await store.add_record(KIND, KEY_ID, {"key": secrets.token_hex(32)}, NEVER)
    record = await store.record(KIND, KEY_ID)
    if record is None:  # pragma: no cover - the add above leaves one
        raise RuntimeError("no paging key in the store")
    return bytes.fromhex(record["key"])


def sign(key: bytes, cursor: str, params: list[tuple[str, str]]) -> str:
    return f"{cursor}{SEPARATOR}{_mac(key, cursor, params)}"


def verify(key: bytes, signed: str, params: list[tuple[str, str]]) -> str:
    """The store's cursor in `signed`, if the server made it for this search; else 400."""
    cursor, _, mac = signed.rpartition(SEPARATOR)
    if not cursor or not hmac.compare_digest(mac, _mac(key, cursor, params)):
        raise outcome.bad_request("This _cursor was not made by this server for this search")
    return cursor


def _mac(key: bytes, cursor: str, params: list[tuple[str, str]]) -> str:
    search = urlencode(sorted((k, v) for k, v in params if k != "_cursor"))
    digest = hmac.new(key, f"{cursor}\n{search}".encode(), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
