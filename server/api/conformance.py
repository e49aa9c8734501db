"""The conformance resources the server loaded (`server.fhir.conformance`), served read-only:
`GET /fhir/{type}` searches them, `GET /fhir/{type}/{id}` reads one, for StructureDefinition,
SearchParameter, OperationDefinition, ValueSet, CodeSystem and ImplementationGuide. They are
data shipped with the server, not stored resources: writing them is 405.

Like `/fhir/metadata` they are public: a client resolves a canonical (`?url=`) before it holds a
token, and nothing in them belongs to anyone. Search takes `_id`, `url` (`url|version` too),
`name` (starts with, or `:exact`, `:contains`), `version`, and on StructureDefinition and
SearchParameter `base` and `type`; `_count`, `_summary`, `_elements`; an unknown parameter is
ignored and reported, or 400 under `Prefer: handling=strict`. The matches are a fixed list, so a
page's cursor is its offset in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from server.api.deps import SettingsDep, strict
from server.api.negotiation import check_accept, fhir_response
from server.fhir import conformance, outcome, summary
from server.fhir.bundles import bundle, search_entry
from server.fhir.conformance import Conformance
from server.fhir.search import DEFAULT_COUNT, IGNORED, check_costs, count_value
from server.fhir.values import normalize_string
from server.limits import Limits

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)], tags=["conformance"])
CORE = "http://hl7.org/fhir/SearchParameter/"
COMMON = {  # code: (element, search type, definition)
    "_id": ("id", "token", CORE + "Resource-id"),
    "url": ("url", "uri", CORE + "conformance-url"),
    "name": ("name", "string", CORE + "conformance-name"),
    "version": ("version", "token", CORE + "conformance-version"),
}
EXTRA = {
    "StructureDefinition": {
        "base": ("baseDefinition", "reference", CORE + "StructureDefinition-base"),
        "type": ("type", "token", CORE + "StructureDefinition-type"),
    },
    "SearchParameter": {
        "base": ("base", "token", CORE + "SearchParameter-base"),
        "type": ("type", "token", CORE + "SearchParameter-type"),
    },
}
MODIFIERS = {"string": ("exact", "contains")}
SUMMARIES = ("true", "false", "count", "text", "data")
READ_ONLY = "GET, HEAD"


def params_of(resource_type: str) -> dict[str, tuple[str, str, str]]:
    return {**COMMON, **EXTRA.get(resource_type, {})}


def capability(resource_type: str) -> dict[str, Any]:
    """This type's `rest.resource` in the CapabilityStatement."""
    return {
        "type": resource_type,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {"name": code, "definition": definition, "type": kind}
            for code, (_, kind, definition) in params_of(resource_type).items()
        ],
    }


@dataclass
class Query:
    criteria: list[tuple[str, str | None, list[str]]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def parse(resource_type: str, params: list[tuple[str, str]], strict: bool, limits: Limits) -> Query:
    check_costs(params, limits)
    query = Query(count=min(DEFAULT_COUNT, limits.page_size))
    known = params_of(resource_type)
    for name, value in params:
        code, _, modifier = name.partition(":")
        if name in IGNORED or name == "_total" or _control(query, name, value, limits):
            continue
        if code in known:
            if modifier and modifier not in MODIFIERS.get(known[code][1], ()):
                raise outcome.bad_request(f"Modifier :{modifier[:40]} is not supported on {code}")
            query.criteria.append((code, modifier or None, value.split(",")))
        elif strict:
            raise outcome.bad_request(
                f"Unknown search parameter {name[:80]!r} for {resource_type}", "not-supported"
            )
        else:
            query.ignored.append(name)
    return query


def _control(query: Query, name: str, value: str, limits: Limits) -> bool:
    """Apply a result parameter; False if `name` is not one."""
    if name == "_count":
        query.count = count_value(value, limits.page_size)
    elif name == "_summary":
        if value not in SUMMARIES:
            raise outcome.bad_request(f"Unsupported _summary value {value[:40]!r}")
        query.summary = value
    elif name == "_elements":
        query.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_cursor":
        if not (value.isascii() and value.isdecimal()) or len(value) > 9:
            raise outcome.bad_request(f"_cursor {value[:40]!r} is not a page of this search")
        query.offset = int(value)
    else:
        return False
    return True


def matches(resource: dict[str, Any], query: Query) -> bool:
    """Every criterion holds (AND), each by one of its values (OR)."""
    known = params_of(resource["resourceType"])
    return all(
        any(_hit(resource, known[code], modifier, wanted) for wanted in values)
        for code, modifier, values in query.criteria
    )


def _hit(
    resource: dict[str, Any], param: tuple[str, str, str], modifier: str | None, wanted: str
) -> bool:
    element, kind, _ = param
    if element == "url" and "|" in wanted:  # a canonical with its version
        url, _, version = wanted.partition("|")
        return resource.get("url") == url and resource.get("version") == version
    found = resource.get(element)
    values = [v for v in (found if isinstance(found, list) else [found]) if isinstance(v, str)]
    if kind != "string" or modifier == "exact":
        return wanted in values
    text = normalize_string(wanted)
    if modifier == "contains":
        return any(text in normalize_string(v) for v in values)
    return any(normalize_string(v).startswith(text) for v in values)


def searchset(
    registry: Conformance,
    resource_type: str,
    params: list[tuple[str, str]],
    query: Query,
    base: str,
) -> dict[str, Any]:
    found = [r for r in registry.of_type(resource_type) if matches(r, query)]
    page = found[query.offset : query.offset + query.count]
    entries = [
        search_entry(summary.apply(r, query.summary, query.elements), base, "match")
        for r in (page if query.summary != "count" else [])
    ]
    if query.ignored:
        entries.append(_ignored(query.ignored))
    kept = [(k, v) for k, v in params if k != "_cursor"]
    links = {"self": f"{base}/{resource_type}" + (f"?{urlencode(params)}" if params else "")}
    if query.offset + query.count < len(found) and query.count:
        links["next"] = _page(base, resource_type, kept, query.offset + query.count)
    if query.offset > 0:
        links["previous"] = _page(base, resource_type, kept, max(0, query.offset - query.count))
    return bundle("searchset", entries, total=len(found), links=links)


def _page(base: str, resource_type: str, params: list[tuple[str, str]], offset: int) -> str:
    return f"{base}/{resource_type}?{urlencode([*params, ('_cursor', str(offset))])}"


def _ignored(names: list[str]) -> dict[str, Any]:
    issues = [
        outcome.Issue(
            "not-supported", f"Search parameter {n!r} is unknown and was ignored", "warning"
        )
        for n in names
    ]
    return {"resource": outcome.operation_outcome(issues), "search": {"mode": "outcome"}}


async def _registry(request: Request) -> Conformance:
    registry: Conformance = request.app.state.conformance
    return registry


Registry = Annotated[Conformance, Depends(_registry)]


def _serve(resource_type: str) -> None:
    """The routes of one conformance type, before the generic `/{resource_type}` ones."""

    async def search(request: Request, registry: Registry, settings: SettingsDep) -> Response:
        params = request.query_params.multi_items()
        query = parse(resource_type, params, strict(request), settings.limits)
        body = searchset(registry, resource_type, params, query, settings.fhir_base)
        return fhir_response(200, body, pretty=request.query_params.get("_pretty") == "true")

    async def search_by_post(
        request: Request, registry: Registry, settings: SettingsDep
    ) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            raise outcome.unsupported_media("POST _search takes application/x-www-form-urlencoded")
        form = (await request.body())[: settings.max_body_bytes].decode("utf-8", "replace")
        params = request.query_params.multi_items() + parse_qsl(form, keep_blank_values=True)
        query = parse(resource_type, params, strict(request), settings.limits)
        return fhir_response(
            200, searchset(registry, resource_type, params, query, settings.fhir_base)
        )

    async def read(resource_id: str, registry: Registry) -> Response:
        found = registry.get(resource_type, resource_id)
        if found is None:
            raise outcome.not_found(f"{resource_type}/{resource_id[:80]} is not known here")
        return fhir_response(200, found)

    async def read_only() -> Response:
        raise outcome.method_not_allowed(
            f"{resource_type} resources are the server's definitions, read-only: use GET",
            READ_ONLY,
        )

    path = f"/{resource_type}"
    writes = ["POST", "PUT", "PATCH", "DELETE"]
    router.add_api_route(path, search, methods=["GET"], name=f"search_{resource_type}")
    router.add_api_route(
        f"{path}/_search", search_by_post, methods=["POST"], name=f"search_post_{resource_type}"
    )
    router.add_api_route(path, read_only, methods=writes, include_in_schema=False)
    router.add_api_route(
        f"{path}/{{resource_id}}", read, methods=["GET"], name=f"read_{resource_type}"
    )
    router.add_api_route(
        f"{path}/{{resource_id}}", read_only, methods=writes, include_in_schema=False
    )


for served in conformance.SERVED:
    _serve(served)
