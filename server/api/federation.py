"""The sources this server aggregates, over HTTP (admin clients only): register, list, read
the status of, poll now and remove the publishers whose SMART Scheduling Links publication is
kept here (`server.federation`). Plain JSON: these are not FHIR resources.

    POST   /federation/sources              {"url": ..., "name": ...}   201
    GET    /federation/sources              every source with its status
    GET    /federation/sources/{name}       one, with the status of its last poll
    POST   /federation/sources/{name}/poll  poll it now (within the request time budget)
    DELETE /federation/sources/{name}       forget it and delete what was kept from it
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from server.api.deps import AccessDep, StoreDep
from server.auth.access import Access, forbidden
from server.federation import consumer, polling, sources
from server.fhir.values import format_instant
from server.store.base import Store

router = APIRouter(prefix="/federation", tags=["federation"])


class SourceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    name: str | None = Field(default=None, max_length=40)


@router.post("/sources", status_code=201)
async def add_source(
    request: Request, wanted: SourceRequest, access: AccessDep, store: StoreDep
) -> Response:
    _admin_only(access)
    now = format_instant(request.app.state.policy.now())
    source = await sources.add(store, url=wanted.url, name=wanted.name, now=now)
    return _json(201, await _shown(store, source))


@router.get("/sources")
async def list_sources(access: AccessDep, store: StoreDep) -> Response:
    _admin_only(access)
    return _json(200, [await _shown(store, s) for s in await sources.list_all(store)])


@router.get("/sources/{name}")
async def read_source(name: str, access: AccessDep, store: StoreDep) -> Response:
    _admin_only(access)
    return _json(200, await _shown(store, await sources.get_or_raise(store, name)))


@router.post("/sources/{name}/poll")
async def poll_source(request: Request, name: str, access: AccessDep, store: StoreDep) -> Response:
    _admin_only(access)
    source = await sources.get_or_raise(store, name)
    state = request.app.state
    await polling.poll_one(store, state.federation_http, state.federation_rules, source)
    return _json(200, await _shown(store, source))


@router.delete("/sources/{name}")
async def remove_source(
    request: Request, name: str, access: AccessDep, store: StoreDep
) -> Response:
    _admin_only(access)
    source = await sources.get_or_raise(store, name)
    await sources.remove(store, source, format_instant(request.app.state.policy.now()))
    removed = await consumer.forget(store, request.app.state.federation_rules, source.name)
    return _json(200, {"name": source.name, "removed": removed})


def _admin_only(access: Access) -> None:
    if not access.admin:
        raise forbidden("Only an admin client may manage the federation sources")


async def _shown(store: Store, source: sources.Source) -> dict[str, Any]:
    return {**source.public(), "status": (await sources.status(store, source.name)).public()}


def _json(status: int, body: Any) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
