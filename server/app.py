"""create_app(settings): wiring only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from server.api import (
    api_docs,
    auth,
    conformance,
    errors,
    export,
    federation,
    find,
    grants,
    health,
    hot_routes,
    metadata,
    openapi,
    paging,
    publication,
    rest,
    sandbox,
    scheduling,
    stats,
    validation,
)
from server.api.access_log import AccessLog
from server.api.budget import TimeBudget
from server.api.head import HeadAsGet
from server.api.request_ids import RequestIds
from server.audit.queue import AuditQueue
from server.auth.grants import GrantBook
from server.auth.tokens import Authority
from server.config import Settings
from server.federation import consumer, polling
from server.fhir import conformance as definitions
from server.scheduling import expiry
from server.scheduling.policy import Policy, utc_now
from server.store.base import Store
from server.store.mongo import MongoStore
from server.store.sqlite import SqliteStore

GZIP_FROM_BYTES = 1024  # smaller answers go as they are
FEDERATION_TIMEOUT = 30.0  # seconds without a byte from a source before its poll fails


def make_store(settings: Settings) -> Store:
    if settings.mongodb_uri:
        return MongoStore(settings.mongodb_uri, own_base=settings.fhir_base)
    return SqliteStore(settings.sqlite_path, own_base=settings.fhir_base)


def make_policy(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Policy:
    codes = frozenset(c.strip() for c in settings.vaccination_codes.split(",") if c.strip())
    systems = settings.national_identifier_systems.split(",")
    return Policy(
        hold=timedelta(seconds=settings.hold_seconds),
        vaccination_codes=codes,
        clock=clock,
        national_identifier_systems=frozenset(s.strip() for s in systems if s.strip()),
    )


def load_conformance(settings: Settings) -> definitions.Conformance:
    """The conformance resources: ours, the core ones and the configured packages (once)."""
    packages = tuple(p.strip() for p in settings.ig_packages.split(",") if p.strip())
    return definitions.load(packages)


def make_authority(
    settings: Settings,
    store: Store,
    clock: Callable[[], datetime] = utc_now,
    http: httpx.AsyncClient | None = None,
) -> Authority:
    return Authority(
        store,
        fhir_base=settings.fhir_base,
        token_seconds=settings.token_seconds,
        key_rotation_seconds=settings.key_rotation_seconds,
        signing_key_file=settings.signing_key_file,
        http=http,
        clock=lambda: clock().timestamp(),
    )


def create_app(
    settings: Settings,
    clock: Callable[[], datetime] = utc_now,
    jwks_http: httpx.AsyncClient | None = None,
    federation_http: httpx.AsyncClient | None = None,
) -> FastAPI:
    """`clock` is what scheduling and tokens read the time from: tests move it forward to expire
    holds and tokens. `jwks_http` fetches clients' JWKS URLs (tests inject a mock transport);
    `federation_http` reads the sources' publications (one of ours when not given)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = make_store(settings)
        await store.open()
        app.state.store = store
        app.state.paging_key = await paging.load_key(store)
        authority = make_authority(settings, store, clock, jwks_http)
        audit = app.state.audit = AuditQueue(store, settings.fhir_base, clock)
        tasks = [asyncio.create_task(audit.run(settings.audit_flush_seconds))]
        if settings.hold_sweep_seconds > 0:
            rules = expiry.server_rules(app.state.policy, settings.fhir_base, settings.limits)
            tasks.append(
                asyncio.create_task(expiry.sweep(store, rules, settings.hold_sweep_seconds))
            )
        http = federation_http or httpx.AsyncClient(timeout=FEDERATION_TIMEOUT)
        app.state.federation_http = http
        rules = app.state.federation_rules = consumer.server_rules(
            app.state.policy, settings.fhir_base, settings.limits
        )
        if settings.federation_poll_seconds > 0:
            every = settings.federation_poll_seconds
            tasks.append(asyncio.create_task(polling.run(store, http, rules, every)))
        try:
            await authority.open()
            app.state.authority = authority
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await audit.flush()
            if federation_http is None:
                await http.aclose()
            await authority.close()
            await store.close()

    app = FastAPI(
        title="Créneau",
        version="0.1.0",
        lifespan=lifespan,
        description="Open, interoperable FHIR R4B scheduling server",
        docs_url=None,  # served by `api_docs`, without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.policy = make_policy(settings, clock)
    app.state.grants = GrantBook()
    app.state.conformance = load_conformance(settings)
    app.openapi = openapi.document_of(app)  # type: ignore[method-assign]
    errors.install(app)
    app.add_middleware(TimeBudget, seconds=settings.limits.request_seconds)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_FROM_BYTES)
    _allow_browsers(app, settings)
    app.add_middleware(HeadAsGet)
    if settings.access_log:
        app.add_middleware(AccessLog)
    app.add_middleware(RequestIds)  # outermost: every answer carries one, errors included
    app.include_router(health.router)
    app.include_router(sandbox.router)
    stats.install(app)  # open statistics: no token asked
    api_docs.install(app)
    app.include_router(metadata.router)
    app.include_router(conformance.router)  # before rest: these types are not stored
    app.include_router(auth.router)  # before rest: `.well-known` is not a resource type
    app.include_router(find.router)  # before rest: `$find` is not a resource id
    app.include_router(validation.router)  # before rest: `$validate` neither
    app.include_router(scheduling.router)
    app.include_router(grants.router)
    app.include_router(federation.router)
    app.include_router(publication.router)  # before rest: `$bulk-publish` is not a type
    app.include_router(export.router)  # before rest: `$export` neither
    app.include_router(rest.router)
    hot_routes.install(app)  # ahead of them all
    return app


# What a browser booking app sends and reads beyond the CORS-safelisted headers.
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Exist",
    "If-None-Match",
    "If-Modified-Since",
    "Prefer",
    "X-On-Behalf-Of",
)
CORS_RESPONSE_HEADERS = ("Location", "Content-Location", "ETag", "Last-Modified")


def _allow_browsers(app: FastAPI, settings: Settings) -> None:
    """CORS for the origins the operator lists (`CRENEAU_CORS_ORIGINS`, `*` for any): bearer
    tokens, not cookies, so credentials are never allowed."""
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=list(CORS_REQUEST_HEADERS),
        expose_headers=list(CORS_RESPONSE_HEADERS),
        max_age=600,
    )


def from_env() -> FastAPI:
    """The app factory uvicorn workers call: settings come from CRENEAU_* variables."""
    return create_app(Settings.from_env())
