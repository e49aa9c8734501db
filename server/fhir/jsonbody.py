"""Turning request bytes into JSON we are willing to hold, and nothing else.

Refuses what must never reach validation or a database: text that is not UTF-8, malformed JSON,
nesting deeper than a FHIR resource ever needs, and object keys that a document store would read
as an operator or a path (`$where`, `a.b`) — whatever the resource type says.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.fhir import outcome

MAX_DEPTH = 48


def parse(raw: bytes) -> Any:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise outcome.bad_request(f"Body is not UTF-8 (byte {exc.start})", "structure") from None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise outcome.bad_request(f"Malformed JSON: {exc}", "structure") from None
    check_shape(value)
    return value


def check_shape(value: Any) -> None:
    """Depth and key checks, iteratively so that hostile nesting cannot exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise outcome.bad_request(f"JSON nested deeper than {MAX_DEPTH} levels", "structure")
        if isinstance(node, dict):
            for key, child in node.items():
                if key.startswith("$") or "." in key or "\x00" in key:
                    raise outcome.bad_request(f"Forbidden JSON key {key!r}", "structure")
                stack.append((child, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
