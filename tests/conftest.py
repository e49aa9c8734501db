"""Test fixtures: the real app over HTTP (httpx ASGI transport, real lifespan) on each store.

Every test that takes `client` runs twice: on the embedded SQLite store and on MongoDB through
the real PyMongo driver, against an nx-27017 server this session starts on a free loopback port.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from server.app import create_app
from server.auth import clients
from server.config import Settings

BASE = "http://test/fhir"
NX = Path(sys.executable).parent / "nx-27017"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    folder = tmp_path_factory.mktemp("nx")
    process = subprocess.Popen(
        [
            str(NX),
            "--data-dir",
            str(folder / "data"),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--log-file",
            str(folder / "nx.log"),
            "--pid-file",
            str(folder / "nx.pid"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("nx-27017 did not start")
    yield f"mongodb://127.0.0.1:{port}/?directConnection=true"
    process.terminate()
    process.wait(timeout=10)


# Tokens last a day here: tests move the clock forward (to expire holds) with the same token.
# Queued AuditEvents are written when a test flushes them (`app.state.audit.flush()`), not in
# the background: nx-27017 does not isolate concurrent MongoDB transactions. Lapsed holds are
# cancelled when a test sweeps (`expiry.lapse_due`), not in the background: tests move the clock.
COMMON = {
    "base_url": BASE,
    "max_body_bytes": 64 * 1024,
    "token_seconds": 86_400,
    "audit_flush_seconds": 3600.0,
    "hold_sweep_seconds": 0.0,
}


@pytest.fixture(params=["sqlite", "mongo"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "mongo":
        uri = request.getfixturevalue("mongodb_uri")
        database = f"t{uuid.uuid4().hex[:12]}"
        uri = uri.replace("/?", f"/{database}?")
        return Settings(**COMMON, mongodb_uri=uri)  # type: ignore[arg-type]
    return Settings(**COMMON, data_dir=tmp_path / "store")  # type: ignore[arg-type]


class TimeTravel:
    """The real clock, moved forward on demand: how a test sees a hold expire."""

    def __init__(self) -> None:
        self.ahead = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.ahead

    def forward(self, by: timedelta) -> None:
        self.ahead += by


@pytest.fixture
def time_travel() -> TimeTravel:
    return TimeTravel()


@pytest.fixture
async def app(settings: Settings, time_travel: TimeTravel) -> AsyncIterator[FastAPI]:
    """The app with auth on, its lifespan running."""
    application = create_app(settings, clock=time_travel.now)
    async with application.router.lifespan_context(application):
        yield application


AppClient = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def app_client(app: FastAPI) -> AsyncIterator[AppClient]:
    """Registers a client app and gives an HTTP client carrying its access token:
    `await app_client(name, owners=[...], admin=False, scope=None)`."""
    opened: list[httpx.AsyncClient] = []

    async def make(
        name: str = "booking-app",
        *,
        owners: tuple[str, ...] = (),
        admin: bool = False,
        scope: str | None = None,
    ) -> httpx.AsyncClient:
        registered, _ = await clients.create(
            app.state.store, name=name, owners=owners, admin=admin, scope=scope, secret=True
        )
        token = await app.state.authority.issue(registered)
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {token['access_token']}"},
        )
        http.client_id = registered.client_id  # type: ignore[attr-defined]
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()


@pytest.fixture
async def client(app_client: AppClient) -> httpx.AsyncClient:
    """The operator's admin client: what the black-box suite runs as, with auth on."""
    return await app_client("operator", admin=True)
