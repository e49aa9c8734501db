"""The FHIR REST routes under /fhir: instance, type and system interactions."""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from server.api import bundles
from server.api.deps import Fhir, SettingsDep, prefers, strict
from server.api.negotiation import check_accept, fhir_response, read_json
from server.api.replies import Reply, parse_etag
from server.fhir import outcome

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)])
PATCH_TYPES = ("application/json-patch+json",)


def render(request: Request, reply: Reply, warnings: Sequence[outcome.Issue] = ()) -> Response:
    """The reply as `Prefer: return=` asks; a write's OperationOutcome carries its `warnings`
    (a profile not known here, a value set not loaded)."""
    body = reply.body
    wanted = prefers(request, "return")
    if wanted == "minimal" and request.method in ("POST", "PUT", "PATCH"):
        body = None
    elif wanted == "OperationOutcome" and request.method in ("POST", "PUT", "PATCH"):
        issue = outcome.Issue("informational", f"{request.method} done", severity="information")
        body = outcome.operation_outcome([issue, *warnings])
    pretty = request.query_params.get("_pretty") == "true"
    return fhir_response(reply.status, body, reply.headers, pretty)


def _self_url(request: Request, base: str) -> str:
    return f"{base}{request.url.path.removeprefix('/fhir')}" + (
        f"?{request.url.query}" if request.url.query else ""
    )


@router.post("")
@router.post("/", include_in_schema=False)
async def system_bundle(request: Request, fhir: Fhir, settings: SettingsDep) -> Response:
    body = await read_json(request, settings.max_body_bytes)
    return render(request, await bundles.process(fhir, body))


@router.get("/_history")
async def system_history(request: Request, fhir: Fhir) -> Response:
    params = request.query_params.multi_items()
    return render(request, await fhir.history(None, None, params, _self_url(request, fhir.base)))


@router.api_route("/_history", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
@router.api_route(
    "/{resource_type}/_history", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def history_is_read_only() -> Response:
    raise outcome.method_not_allowed("History is read-only: use GET", "GET, HEAD")


@router.get("/{resource_type}")
async def search(resource_type: str, request: Request, fhir: Fhir) -> Response:
    params = request.query_params.multi_items()
    reply = await fhir.search(
        resource_type, params, strict=strict(request), self_url=_self_url(request, fhir.base)
    )
    return render(request, reply)


@router.post("/{resource_type}/_search")
async def search_by_post(
    resource_type: str, request: Request, fhir: Fhir, settings: SettingsDep
) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        raise outcome.unsupported_media("POST _search takes application/x-www-form-urlencoded")
    form = (await request.body())[: settings.max_body_bytes].decode("utf-8", "replace")
    params = request.query_params.multi_items() + parse_qsl(form, keep_blank_values=True)
    query = f"?{urlencode(params)}" if params else ""  # the self link is the equivalent GET
    reply = await fhir.search(
        resource_type,
        params,
        strict=strict(request),
        self_url=f"{fhir.base}/{resource_type}{query}",
    )
    return render(request, reply)


@router.post("/{resource_type}")
async def create(
    resource_type: str, request: Request, fhir: Fhir, settings: SettingsDep
) -> Response:
    body = await read_json(request, settings.max_body_bytes)
    async with fhir.transaction() as tx:
        reply = await fhir.create(tx, resource_type, body, if_none_exist=_condition(request))
    return render(request, reply, fhir.warnings)


FORMAT_PARAMS = ("_format", "_pretty")  # how to answer, not which resource


def _condition(request: Request) -> str | None:
    """A conditional create's criteria: `If-None-Exist`, or the search a client put in the URL
    (`POST Practitioner?identifier=…`, as fhirpy's `get_or_create` sends it): never ignored,
    which would create a duplicate. Both at once must agree."""
    header = request.headers.get("if-none-exist")
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in FORMAT_PARAMS]
    query = urlencode(kept)
    if (
        header
        and kept
        and sorted(parse_qsl(header.lstrip("?"), keep_blank_values=True)) != sorted(kept)
    ):
        raise outcome.bad_request("If-None-Exist and the URL's search differ: give one of them")
    return header or query or None


@router.put("/{resource_type}")
async def conditional_update(
    resource_type: str, request: Request, fhir: Fhir, settings: SettingsDep
) -> Response:
    body = await read_json(request, settings.max_body_bytes)
    async with fhir.transaction() as tx:
        reply = await fhir.conditional_update(
            tx,
            resource_type,
            request.url.query,
            body,
            if_match=parse_etag(request.headers.get("if-match")),
        )
    return render(request, reply, fhir.warnings)


@router.delete("/{resource_type}")
async def conditional_delete(resource_type: str, request: Request, fhir: Fhir) -> Response:
    async with fhir.transaction() as tx:
        reply = await fhir.conditional_delete(tx, resource_type, request.url.query)
    return render(request, reply)


@router.get("/{resource_type}/_history")
async def type_history(resource_type: str, request: Request, fhir: Fhir) -> Response:
    params = request.query_params.multi_items()
    reply = await fhir.history(resource_type, None, params, _self_url(request, fhir.base))
    return render(request, reply)


@router.get("/{resource_type}/{resource_id}")
async def read(resource_type: str, resource_id: str, request: Request, fhir: Fhir) -> Response:
    reply = await fhir.read(resource_type, resource_id)
    if reply.status == 200 and unchanged_for(request, reply.headers):
        kept = {k: v for k, v in reply.headers.items() if k in ("ETag", "Last-Modified")}
        return Response(status_code=304, headers=kept)
    return render(request, reply)


def unchanged_for(request: Request, headers: dict[str, str]) -> bool:
    """A conditional read (RFC 9110) the client's copy answers: `If-None-Match` naming the
    current ETag (or `*`), else `If-Modified-Since` not before the last change."""
    match = request.headers.get("if-none-match")
    if match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in match.split(",")}
        return "*" in tags or headers.get("ETag", "").removeprefix("W/") in tags
    since = request.headers.get("if-modified-since")
    modified = headers.get("Last-Modified")
    if since is None or modified is None:
        return False
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as HTTP says


@router.put("/{resource_type}/{resource_id}")
async def update(
    resource_type: str,
    resource_id: str,
    request: Request,
    fhir: Fhir,
    settings: SettingsDep,
) -> Response:
    body = await read_json(request, settings.max_body_bytes)
    async with fhir.transaction() as tx:
        reply = await fhir.update(
            tx,
            resource_type,
            resource_id,
            body,
            if_match=parse_etag(request.headers.get("if-match")),
        )
    return render(request, reply, fhir.warnings)


@router.patch("/{resource_type}/{resource_id}")
async def patch(
    resource_type: str,
    resource_id: str,
    request: Request,
    fhir: Fhir,
    settings: SettingsDep,
) -> Response:
    operations = await read_json(request, settings.max_body_bytes, PATCH_TYPES)
    async with fhir.transaction() as tx:
        reply = await fhir.patch(
            tx,
            resource_type,
            resource_id,
            operations,
            if_match=parse_etag(request.headers.get("if-match")),
        )
    return render(request, reply, fhir.warnings)


@router.delete("/{resource_type}/{resource_id}")
async def delete(resource_type: str, resource_id: str, request: Request, fhir: Fhir) -> Response:
    async with fhir.transaction() as tx:
        reply = await fhir.delete(
            tx, resource_type, resource_id, if_match=parse_etag(request.headers.get("if-match"))
        )
    return render(request, reply)


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(
    resource_type: str, resource_id: str, request: Request, fhir: Fhir
) -> Response:
    params = request.query_params.multi_items()
    reply = await fhir.history(resource_type, resource_id, params, _self_url(request, fhir.base))
    return render(request, reply)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(
    resource_type: str, resource_id: str, version_id: str, request: Request, fhir: Fhir
) -> Response:
    return render(request, await fhir.vread(resource_type, resource_id, version_id))
