"""create_app(settings): wiring only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from fastapi import FastAPI

from server.api import errors, metadata, rest, scheduling
from server.config import Settings
from server.scheduling.policy import Policy, utc_now
from server.store.base import Store
from server.store.mongo import MongoStore
from server.store.sqlite import SqliteStore


def make_store(settings: Settings) -> Store:
    if settings.mongodb_uri:
        return MongoStore(settings.mongodb_uri, own_base=settings.fhir_base)
    return SqliteStore(settings.sqlite_path, own_base=settings.fhir_base)


def make_policy(settings: Settings, clock: Callable[[], datetime] = utc_now) -> Policy:
    codes = frozenset(c.strip() for c in settings.vaccination_codes.split(",") if c.strip())
    return Policy(
        hold=timedelta(seconds=settings.hold_seconds), vaccination_codes=codes, clock=clock
    )


def create_app(settings: Settings, clock: Callable[[], datetime] = utc_now) -> FastAPI:
    """`clock` is what scheduling reads the time from: tests move it forward to expire holds."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = make_store(settings)
        await store.open()
        app.state.store = store
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(
        title="Créneau",
        version="0.1.0",
        lifespan=lifespan,
        description="Open, interoperable FHIR R4B scheduling server",
    )
    app.state.settings = settings
    app.state.policy = make_policy(settings, clock)
    errors.install(app)
    app.include_router(metadata.router)
    app.include_router(scheduling.router)  # before rest: `$find` is not a resource id
    app.include_router(rest.router)
    return app


def from_env() -> FastAPI:
    """The app factory uvicorn workers call: settings come from CRENEAU_* variables."""
    return create_app(Settings.from_env())
