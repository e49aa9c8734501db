"""Paging cursors: an opaque, URL-safe encoding of a store's paging position (a JSON object).
Each store decides what the position holds and checks its values after `decode`."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from server.fhir import outcome


def encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode().rstrip("=")


def decode(cursor: str) -> dict[str, Any]:
    """The position a cursor encodes; 400 for anything that is not one of ours."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        raise outcome.bad_request("Invalid paging cursor") from None
    if not isinstance(data, dict):
        raise outcome.bad_request("Invalid paging cursor")
    return data
