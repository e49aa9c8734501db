"""`GET /health` (the process answers) and `GET /health/ready` (its store answers too), for a
load balancer or an orchestrator. No auth: they say nothing about the data."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.responses import JSONResponse

from server.api.deps import StoreDep

router = APIRouter()
log = logging.getLogger(__name__)
HEALTH_JSON = "application/health+json"  # draft-inadarei-api-health-check


@router.get("/health")
async def alive() -> JSONResponse:
    return JSONResponse({"status": "pass"}, media_type=HEALTH_JSON)


@router.get("/health/ready")
async def ready(store: StoreDep) -> JSONResponse:
    try:
        await store.current("Basic", "health-probe")  # one read by key
    except Exception as error:  # the store away: not ready, and the reason logged
        log.warning("not ready: %s", error)
        return JSONResponse({"status": "fail"}, status_code=503, media_type=HEALTH_JSON)
    return JSONResponse({"status": "pass"}, media_type=HEALTH_JSON)
