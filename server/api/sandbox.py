"""The sandbox's own routes (`creneau serve --sandbox` only; 404 otherwise): `GET /sandbox` lists
the named scenarios (fixtures/README.md), `POST /sandbox/reset?scenario=NAME` empties the store
and loads one, through the same validation and scheduling rules as any write.

Not FHIR: plain JSON, like the operator's client API. The reset flushes the queued AuditEvents
first (so none lands in the new data) and starts this worker's grant cache afresh: the grant
epoch is a tally, emptied with the rest.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from fixtures.loading import Loader, Memory, Report
from fixtures.scenarios import SCENARIOS, build
from server.api.deps import settings_of, store_of
from server.auth.grants import GrantBook
from server.fhir import outcome

router = APIRouter(prefix="/sandbox", tags=["sandbox"])


def _sandbox_only(request: Request) -> None:
    if not settings_of(request).sandbox:
        raise outcome.not_found("There is no sandbox here: start the server with --sandbox")


@router.get("")
async def scenarios(request: Request) -> JSONResponse:
    _sandbox_only(request)
    listed = [
        {
            "name": s.name,
            "description": " ".join(s.summary.split()),
            "reset": f"/sandbox/reset?scenario={s.name}",
        }
        for s in SCENARIOS.values()
    ]
    return JSONResponse({"scenarios": listed})


@router.post("/reset")
async def reset(request: Request, scenario: str = "") -> JSONResponse:
    _sandbox_only(request)
    if scenario not in SCENARIOS:
        raise outcome.bad_request(f"scenario is one of {', '.join(SCENARIOS)}, not {scenario!r}")
    began = time.monotonic()
    state, settings, store = request.app.state, settings_of(request), store_of(request)
    await state.audit.flush()
    await store.clear()
    state.grants = GrantBook()
    resources, apps = build(scenario, state.policy.now().date())
    loader = Loader(
        store,
        settings.fhir_base,
        state.policy,
        profiles=state.conformance.by_url,
        limits=settings.limits,
    )
    report = await loader.load(Memory(resources, apps))
    return JSONResponse(_answer(scenario, report, time.monotonic() - began))


def _answer(scenario: str, report: Report, seconds: float) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "created": dict(report.created),
        "refused": dict(report.refused),
        "reasons": report.reasons,
        "apps": report.apps,
        "seconds": round(seconds, 2),
    }
