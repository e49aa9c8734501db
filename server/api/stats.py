"""The open statistics: `GET /stats/appointments` (JSON, or CSV with `Accept: text/csv` or
`_format=csv`) and `GET /stats`, a page drawing them, its chart library (plotly.js) served from
the installed `plotly` package, so that it works offline and behind a closed network (no CDN).

No token is asked, with auth on as in the sandbox: the figures are aggregates with no
identifier, small cells withheld (`server.stats.figures`). See docs/statistics.md.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from server.api.deps import SettingsDep, StoreDep
from server.fhir import outcome
from server.stats import figures, inquiry, reports

PAGE = Path(__file__).parent / "stats_page"
PLOTLY = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
ASSETS = "/stats/assets"
OPEN = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=60"}
CSV = "text/csv"
FORMATS = ("json", "csv")
router = APIRouter()
page = APIRouter(include_in_schema=False)


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


DAY = {"type": "string", "format": "date"}
OUTCOME = {"application/fhir+json": {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}
CODE = {"type": "string", "minLength": 1, "maxLength": inquiry.MAX_CODE_CHARS}
FIGURE = {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": "^< "}]}
REPORT = {
    "type": "object",
    "required": ["from", "to", "group-by", "threshold", "measures", "groups", "total"],
    "properties": {
        "from": DAY,
        "to": DAY,
        "group-by": {"type": "array", "items": {"enum": list(inquiry.DIMENSIONS)}},
        "threshold": {"type": "integer"},
        "measures": {"type": "array", "items": {"enum": list(figures.MEASURES)}},
        "where": {"type": "object"},
        "groups": {"type": "array", "items": {"type": "object"}},
        "total": {"type": "object", "properties": dict.fromkeys(figures.MEASURES, FIGURE)},
    },
}
OPENAPI = {
    "parameters": [
        {**_parameter("from", "The first day counted (Europe/Paris)", DAY), "required": True},
        {**_parameter("to", "The last day counted, at most 366 days on", DAY), "required": True},
        _parameter(
            "group-by",
            "Dimensions to group by, at most 3: repeated or comma-separated",
            {"type": "array", "items": {"enum": list(inquiry.DIMENSIONS)}, "maxItems": 3},
        ),
        *(_parameter(name, f"Count only this {name}", CODE) for name in inquiry.FILTERS),
        _parameter("_format", "json (the default) or csv", {"enum": list(FORMATS)}),
    ]
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The figures, by group: a number, or `< threshold` where suppressed",
        "content": {"application/json": {"schema": REPORT}, CSV: {"schema": {"type": "string"}}},
    },
    400: {"description": "A parameter is missing, unknown or wrong", "content": OUTCOME},
    503: {"description": "The computation ran past the request's time budget", "content": OUTCOME},
}


@router.get("/stats/appointments", openapi_extra=OPENAPI, responses=RESPONSES)
async def appointments(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Appointments booked, cancelled, noshow and fulfilled, doses delivered, reserved and
    administered, over a window of days, grouped by department, service type, vaccine, day."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
    as_csv = _wants_csv(request)
    asked = inquiry.parse(params)
    table = await figures.compute(store, asked, settings.stats_threshold)
    if not as_csv:
        return JSONResponse(reports.as_json(table), headers=OPEN)
    name = f"appointments-{asked.first.isoformat()}-{asked.last.isoformat()}.csv"
    disposition = {"Content-Disposition": f'inline; filename="{name}"'}
    return Response(
        reports.as_csv(table), media_type=f"{CSV}; charset=utf-8", headers=OPEN | disposition
    )


def _wants_csv(request: Request) -> bool:
    """`_format` decides, else the Accept header: CSV if it names text/csv."""
    chosen = request.query_params.getlist("_format")
    if len(chosen) > 1 or (chosen and chosen[0] not in FORMATS):
        raise outcome.bad_request(f"_format is one of {', '.join(FORMATS)}, given once")
    if chosen:
        return chosen[0] == "csv"
    accepted = [part.split(";")[0].strip() for part in request.headers.get("accept", "").split(",")]
    return CSV in accepted


@page.get("/stats")
async def stats_page() -> FileResponse:
    return FileResponse(PAGE / "index.html", media_type="text/html; charset=utf-8")


@page.get("/stats/plotly.min.js")
async def chart_library() -> FileResponse:
    """plotly.js, as the installed `plotly` package ships it."""
    return FileResponse(
        PLOTLY, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
    )


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(page)
    app.mount(ASSETS, StaticFiles(directory=PAGE), name="stats-page")
