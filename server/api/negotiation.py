"""Content negotiation: JSON only, in the FHIR media types; request bodies within limits."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from starlette.responses import Response

from server.api.shown import shown
from server.fhir import jsonbody, outcome

FHIR_JSON = "application/fhir+json"
# `application/json+fhir` is the DSTU2 name of FHIR JSON: older clients still send it.
JSON_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "application/json-patch+json",
)
XML_HINTS = ("xml",)


def fhir_response(
    status: int,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
    pretty: bool = False,
) -> Response:
    if body is None:
        return Response(status_code=status, headers=headers)
    option = orjson.OPT_INDENT_2 if pretty else 0
    return Response(
        orjson.dumps(shown(body), option=option),
        status_code=status,
        media_type=f"{FHIR_JSON}; charset=utf-8",
        headers=headers,
    )


async def check_accept(request: Request) -> None:
    """406 for a client that asks only for a format we do not produce (XML, ...). Async: a plain
    `def` dependency would cost a thread hop on every request."""
    wanted = request.query_params.get("_format")
    if wanted is not None:
        if wanted not in ("json", "application/json", "application/fhir+json"):
            raise outcome.not_acceptable(f"_format {wanted!r} is not served; use json")
        return
    accept = request.headers.get("accept", "")
    if not accept:
        return
    if any(r in ("*/*", "application/*") or "json" in r for r in _accepted(accept)):
        return
    raise outcome.not_acceptable(f"Accept {accept!r} is not served; this server speaks {FHIR_JSON}")


def _accepted(accept: str) -> list[str]:
    """The media ranges of an Accept header the client takes at all: `q=0` means "not this"."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = (piece.strip().lower() for piece in part.split(";"))
        weights = [p.removeprefix("q=") for p in parameters if p.startswith("q=")]
        try:
            if weights and float(weights[0]) <= 0:
                continue
        except ValueError:
            continue
        ranges.append(media)
    return ranges


async def read_json(request: Request, limit: int, media: tuple[str, ...] = JSON_TYPES) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in media:
        raise outcome.unsupported_media(
            f"Content-Type {content_type or 'none'!r} is not "
            f"accepted here; send {' or '.join(media)}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        raise outcome.too_large(f"The body is larger than {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise outcome.too_large(f"The body is larger than {limit} bytes")
    return jsonbody.parse(bytes(raw))
