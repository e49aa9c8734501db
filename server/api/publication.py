"""SMART Scheduling Links publication over HTTP: `GET /fhir/$bulk-publish` (the manifest) and
the NDJSON files it lists (`server.federation.outputs`), streamed.

Public: a request without a token reads what the owners published for everyone; a token widens
it to what its client may discover (an invalid one is 401, as anywhere). Every answer carries
`ETag`, `Last-Modified` and `Cache-Control: max-age` (the polling interval the server asks
for); `If-None-Match` and `If-Modified-Since` get 304 while nothing the publication reads has
changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from server.api.auth import authority_of
from server.api.deps import SettingsDep, StoreDep, settings_of, store_of
from server.api.negotiation import check_accept
from server.api.openapi_responses import Answer, Kind
from server.auth import remote
from server.auth.access import Access
from server.auth.caller import sandbox
from server.federation import departments, fingerprint, outputs, place_files, slot_files
from server.federation.bookability import Bookability
from server.federation.snapshot import PUBLIC, Snapshot, paced, public
from server.fhir import outcome
from server.fhir.values import format_instant, now_instant, parse_instant, with_plus
from server.store.base import Store

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)], tags=["publication"])
MAX_AGE = 60  # seconds: how often a client should poll
NDJSON = "application/fhir+ndjson"
ERRORS = (400, 401, 404, 406, 503)
MANIFEST = Kind(
    {
        200: Answer("The manifest", {"type": "object"}, "application/json", ("ETag",)),
        304: Answer("Unchanged since If-None-Match or If-Modified-Since", headers=("ETag",)),
    },
    (400, 401, 406, 503),
)
FILE = Kind(
    {
        200: Answer("One resource a line", {"type": "string"}, NDJSON, ("ETag",)),
        304: Answer("Unchanged since If-None-Match or If-Modified-Since", headers=("ETag",)),
    },
    ERRORS,
)
Since = Annotated[
    str | None, Query(alias="_since", description="An instant: only what changed after it")
]


async def _reader(request: Request) -> Access:
    """Who reads: the public without a token, else the token's client (the sandbox: all)."""
    if settings_of(request).sandbox:
        return Access(sandbox())
    store = store_of(request)
    now = format_instant(request.app.state.policy.now())
    header = request.headers.get("authorization")
    if header is None:
        return public(await request.app.state.grants.of(store, PUBLIC.client_id), now)
    caller = await authority_of(request).caller(header)
    if caller.admin:
        return Access(caller)
    return Access.of(caller, await request.app.state.grants.of(store, caller.client_id), now)


Reader = Annotated[Access, Depends(_reader)]


def _documented(kind: Kind) -> dict[int | str, dict[str, Any]]:
    """What the route answers, as FastAPI takes it into the OpenAPI document."""
    documented: dict[int | str, dict[str, Any]] = {}
    documented.update(kind.responses())
    return documented


@router.get("/$bulk-publish", responses=_documented(MANIFEST))
async def manifest(
    request: Request, reader: Reader, store: StoreDep, settings: SettingsDep, since: Since = None
) -> Response:
    snapshot = _snapshot(request, store, reader, since)
    headers, current = await _caching(request, snapshot, "manifest", since)
    if current:
        return Response(status_code=304, headers=headers)
    transaction_time = now_instant()
    schedules: Counter[str] = Counter()
    async for page in snapshot.placed():
        schedules.update(p.department or departments.UNKNOWN for p in page)
    body = outputs.manifest(
        str(request.url),
        transaction_time,
        outputs.slot_files(schedules),
        settings.fhir_base,
        since=since,
        token="authorization" in request.headers,
    )
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


@router.get("/$bulk-publish/{kind}/{name}.ndjson", responses=_documented(FILE))
async def output(
    request: Request, kind: str, name: str, reader: Reader, store: StoreDep, since: Since = None
) -> Response:
    wanted = outputs.parse(kind, name)
    if wanted is None:
        raise outcome.not_found(f"No published file {kind}/{name}.ndjson")
    snapshot = _snapshot(request, store, reader, since)
    headers, current = await _caching(request, snapshot, f"{kind}/{name}", since)
    if current:
        return Response(status_code=304, headers=headers)
    lines: AsyncIterator[bytes]
    if kind == "Slot":
        lines = slot_files.stream(snapshot, await slot_files.schedules_of(snapshot, wanted))
    elif kind == "Location":
        lines = place_files.locations(snapshot)
    else:
        lines = place_files.schedules(snapshot)
    chunks = paced(lines, snapshot.page_seconds)
    return StreamingResponse(chunks, media_type=NDJSON, headers=headers)


def _snapshot(request: Request, store: Store, reader: Access, since: str | None) -> Snapshot:
    policy = request.app.state.policy
    settings = settings_of(request)
    moment = None
    if since is not None:
        moment = parse_instant(with_plus(since))
        if moment is None:
            raise outcome.bad_request(f"_since is an instant with its time zone, not {since!r}")
    bookability = Bookability(store, policy, settings.fhir_base, policy.now())
    budget = settings.limits.request_seconds
    ours = replace(reader, discover=reader.discover - {remote.PUBLISHER})  # never republished
    return Snapshot(store, ours, bookability, moment, budget)


async def _caching(
    request: Request, snapshot: Snapshot, what: str, since: str | None
) -> tuple[dict[str, str], bool]:
    """The caching headers of the answer, and whether the client's copy is current."""
    found = await fingerprint.of(snapshot.store, snapshot.now, MAX_AGE)
    tag = fingerprint.etag(found, fingerprint.reader_of(snapshot.access), what, since or "")
    scope = "private" if "authorization" in request.headers else "public"
    headers = {
        "ETag": tag,
        "Last-Modified": format_datetime(found.modified.replace(microsecond=0), usegmt=True),
        "Cache-Control": f"{scope}, max-age={MAX_AGE}",
        "Vary": "Authorization",
    }
    return headers, _current(request, tag, found.modified)


def _current(request: Request, tag: str, modified: datetime) -> bool:
    """Whether the client's copy is this one: If-None-Match first, else If-Modified-Since."""
    matches = request.headers.get("if-none-match")
    if matches is not None:
        given = {t.strip().removeprefix("W/") for t in matches.split(",")}
        return "*" in given or tag.removeprefix("W/") in given
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        copy = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    return copy.tzinfo is not None and modified.replace(microsecond=0) <= copy
