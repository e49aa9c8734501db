"""FHIR Bulk Data `$export` over HTTP (the asynchronous pattern: kick-off, status, files) and the
admin's `$import` of such an export (`server.federation.export`, `export_files`, `importing`).

Kick-off takes `Prefer: respond-async` (400 without it), `_type`, `_since` and `_outputFormat`,
and answers 202 with the status URL in `Content-Location`. The job is complete at once (its files
are read from the store when downloaded), so the status answers its manifest. Every step needs a
token, and the status and the files that job's client's token: another client's is told 404.
Group export is not offered: Group is not a type this server serves.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Annotated, Any

import httpx
import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response, StreamingResponse

from server.api.bundles import process
from server.api.deps import AccessDep, Fhir, SettingsDep, StoreDep, prefers
from server.api.interactions import Interactions
from server.api.negotiation import check_accept, fhir_response
from server.api.openapi_responses import JSON, Answer, Kind
from server.api.shown import shown
from server.auth.access import Access, everything, forbidden
from server.auth.caller import Caller
from server.auth.scopes import Scopes
from server.config import Settings
from server.federation import export, importing, importing_sources
from server.federation.export_files import Export
from server.federation.snapshot import paced
from server.fhir import outcome
from server.fhir.conformity import Conformity
from server.fhir.values import format_instant, now_instant, parse_instant, with_plus
from server.scheduling.policy import Policy
from server.scheduling.rules import SchedulingRules
from server.store.base import Store

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)], tags=["export"])
NDJSON = "application/fhir+ndjson"
KICK_OFF = Kind(
    {202: Answer("Accepted: poll the status URL it gives", headers=("Content-Location",))},
    (400, 401, 403, 404, 406, 503),
)
STATUS = Kind(
    {200: Answer("The manifest: the job's files", {"type": "object"}, JSON)},
    (400, 401, 403, 404, 406, 503),
)
CANCELLED = Kind({202: Answer("Cancelled: its files are gone")}, (400, 401, 403, 404, 406, 503))
FILE = Kind(
    {200: Answer("One resource a line", {"type": "string"}, NDJSON)},
    (400, 401, 403, 404, 406, 503),
)
IMPORTED = Kind(
    {200: Answer("What was created, found already there and refused")},
    (400, 401, 403, 406, 413, 415, 503),
)


def _documented(kind: Kind) -> dict[int | str, dict[str, Any]]:
    """What the route answers, as FastAPI takes it into the OpenAPI document."""
    documented: dict[int | str, dict[str, Any]] = {}
    documented.update(kind.responses())
    return documented


TypeParam = Annotated[str | None, Query(alias="_type", description="Types, comma separated")]
Since = Annotated[str | None, Query(alias="_since", description="Only what changed after it")]
Format = Annotated[str | None, Query(alias="_outputFormat", description="application/fhir+ndjson")]


@router.get("/$export", responses=_documented(KICK_OFF))
async def kick_off(
    request: Request,
    access: AccessDep,
    store: StoreDep,
    types: TypeParam = None,
    since: Since = None,
    output_format: Format = None,
) -> Response:
    return await _start(request, access, store, export.SYSTEM_TYPES, types, since, output_format)


@router.get("/Practitioner/{practitioner_id}/$export")
async def kick_off_practitioner(
    request: Request, practitioner_id: str, access: AccessDep, store: StoreDep
) -> Response:
    """Its inputs are read from the query (the OpenAPI document takes them from the
    OperationDefinition, `profiles/operations/export.json`)."""
    given = request.query_params
    found = await store.current("Practitioner", practitioner_id)
    if found is None or found.deleted:
        raise outcome.not_found(f"Practitioner/{practitioner_id} not found")
    types, since, output = given.get("_type"), given.get("_since"), given.get("_outputFormat")
    allowed = export.PRACTITIONER_TYPES
    return await _start(request, access, store, allowed, types, since, output, practitioner_id)


async def _start(
    request: Request,
    access: Access,
    store: Store,
    allowed: tuple[str, ...],
    types: str | None,
    since: str | None,
    output_format: str | None,
    practitioner: str | None = None,
) -> Response:
    if prefers(request, "respond-async") is None:
        raise outcome.bad_request("$export runs asynchronously: send Prefer: respond-async")
    export.check_format(output_format)
    job = export.Job(
        export.new_id(),
        access.client_id,
        now_instant(),
        str(request.url),
        export.types_of(types, allowed),
        _instant(since),
        practitioner,
    )
    await store.add_record(export.KIND, job.job_id, job.to_record(), time.time() + export.DAY)
    base = request.app.state.settings.fhir_base
    return Response(
        status_code=202, headers={"Content-Location": f"{base}/$export-status/{job.job_id}"}
    )


@router.get("/$export-status/{job_id}", responses=_documented(STATUS))
async def status(
    job_id: str, access: AccessDep, store: StoreDep, settings: SettingsDep
) -> Response:
    job = await _job(store, access, job_id)
    body = orjson.dumps(export.manifest(job, settings.fhir_base))
    return Response(body, media_type=JSON, headers={"Expires": _expires()})


@router.delete("/$export-status/{job_id}", responses=_documented(CANCELLED))
async def cancel(job_id: str, access: AccessDep, store: StoreDep) -> Response:
    await _job(store, access, job_id)
    await store.put_record(export.KIND, job_id, {"cancelled": True})
    return Response(status_code=202)


@router.get("/$export-file/{job_id}/{kind}.ndjson", responses=_documented(FILE))
async def file(
    job_id: str, kind: str, access: AccessDep, store: StoreDep, settings: SettingsDep
) -> Response:
    job = await _job(store, access, job_id)
    if kind not in job.types:
        raise outcome.not_found(f"The export {job_id} has no {kind} file")
    exported = Export(store, access, job, settings.fhir_base)
    return StreamingResponse(
        paced(_lines(exported.pages(kind)), settings.limits.request_seconds), media_type=NDJSON
    )


@router.post("/$import", responses=_documented(IMPORTED))
async def import_export(request: Request, access: AccessDep, fhir: Fhir) -> Response:
    """Loads the files a manifest lists (admin clients only): the manifest itself, or a
    Parameters of `input` parts (`type`, `url`) and an optional `accessToken` for them."""
    if not access.admin:
        raise forbidden("$import is for admin clients only")
    manifest, token = _manifest(await _json(request))
    async with httpx.AsyncClient(timeout=30.0) as http:
        source = importing_sources.Remote(manifest, http, token)
        report = await load(fhir, source, _origin(manifest))
    return fhir_response(200, outcome_of(report))


def poster(fhir: Interactions) -> importing.Post:
    """The API's transaction processing, as the importer takes it."""

    async def post(bundle: dict[str, Any]) -> dict[str, Any]:
        return (await process(fhir, bundle)).body or {}

    return post


def server_interactions(
    store: Store, settings: Settings, policy: Policy, profiles: Any
) -> Interactions:
    """The interactions of the server's own work (the CLI's import), as an admin client."""
    access = everything(Caller("import", Scopes.parse("system/*.cruds"), admin=True))
    rules = SchedulingRules(policy, access, settings.fhir_base, limits=settings.limits)
    return Interactions(store, settings.fhir_base, rules, access, conformity=Conformity(profiles))


async def load(fhir: Interactions, source: importing.Source, origin: str) -> importing.Report:
    """An export loaded through the rules by `fhir` (`server_interactions` for the CLI)."""
    return await importing.Importer(poster(fhir), origin).load(source)


def outcome_of(report: importing.Report) -> dict[str, Any]:
    """The report as an OperationOutcome: one informational issue per line."""
    lines = report.lines() or ["nothing to import"]
    issues = [{"severity": "information", "code": "informational", "diagnostics": t} for t in lines]
    return {"resourceType": "OperationOutcome", "issue": issues}


async def _job(store: Store, access: Access, job_id: str) -> export.Job:
    record = await store.record(export.KIND, job_id)
    if record is None or record.get("cancelled") or record.get("client") != access.client_id:
        raise outcome.not_found(f"No export {job_id}")
    return export.Job.of_record(job_id, record)


async def _lines(pages: AsyncIterator[list[dict[str, Any]]]) -> AsyncIterator[bytes]:
    async for page in pages:
        yield b"".join(orjson.dumps(shown(body)) + b"\n" for body in page)


def _instant(since: str | None) -> str | None:
    if since is None:
        return None
    moment = parse_instant(with_plus(since))
    if moment is None:
        raise outcome.bad_request(f"_since is an instant with its time zone, not {since!r}")
    return format_instant(moment)


def _expires() -> str:
    return formatdate(time.time() + export.DAY, usegmt=True)


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        raise outcome.bad_request(f"The body is not JSON: {error}") from error


def _origin(manifest: dict[str, Any]) -> str:
    """The base of the server the files come from: what names the resources without an
    identifier of their own (`importing`)."""
    request = manifest.get("request")
    if not isinstance(request, str) or not request.startswith(("http://", "https://")):
        raise outcome.bad_request(
            "The manifest names the export's kick-off URL in `request` (a Parameters, its "
            "`inputSource`): it names the resources that come without an identifier"
        )
    return importing.origin_of(request)


def _manifest(body: Any) -> tuple[dict[str, Any], str | None]:
    """The manifest to load, and the token its files are read with."""
    if not isinstance(body, dict):
        raise outcome.bad_request("$import takes a manifest or a Parameters")
    if body.get("resourceType") != "Parameters":
        return body, None
    inputs, token, origin = [], None, ""
    for parameter in body.get("parameter", []):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if name == "accessToken":
            token = parameter.get("valueString")
        elif name == "inputSource":
            origin = str(parameter.get("valueUri") or parameter.get("valueUrl") or "")
        elif name == "input":
            parts = {p.get("name"): p for p in parameter.get("part", []) if isinstance(p, dict)}
            kind, url = parts.get("type") or {}, parts.get("url") or {}
            inputs.append({"type": kind.get("valueCode"), "url": url.get("valueUrl")})
    return {"request": origin, "output": inputs}, token
