"""A request past its time budget is a 503 with Retry-After at its next store statement, and
keeps nothing it had not committed."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from server.app import create_app
from server.auth import clients
from server.config import Settings
from server.limits import Limits
from tests.factories import FHIR_JSON, make_patient

SPENT = 1e-9  # a budget gone before the first store statement


@pytest.fixture
async def hurried(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of an app on the same store whose requests have no time at all."""
    spent = dataclasses.replace(settings, sandbox=True, limits=Limits(request_seconds=SPENT))
    app = create_app(spent)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


def assert_past_budget(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    issue = response.json()["issue"][0]
    assert issue["code"] == "transient"
    assert "time budget" in issue["diagnostics"]


async def test_a_read_past_its_budget_is_503_with_retry_after(
    hurried: httpx.AsyncClient,
) -> None:
    assert_past_budget(await hurried.get("/fhir/Patient"))


async def test_writes_past_their_budget_keep_nothing(
    hurried: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    assert_past_budget(await hurried.post("/fhir/Patient", json=make_patient(), headers=FHIR_JSON))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": make_patient(given=f"P{n}"),
                "request": {"method": "POST", "url": "Patient"},
            }
            for n in range(5)
        ],
    }
    assert_past_budget(await hurried.post("/fhir", json=bundle, headers=FHIR_JSON))
    found = await client.get("/fhir/Patient", params={"_summary": "count"})
    assert found.json()["total"] == 0


async def test_no_budget_when_it_is_zero(settings: Settings) -> None:
    unbounded = dataclasses.replace(settings, limits=Limits(request_seconds=0))
    app = create_app(unbounded)
    async with app.router.lifespan_context(app):
        admin, _ = await clients.create(app.state.store, name="operator", admin=True)
        token = (await app.state.authority.issue(admin))["access_token"]
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            created = await http.post(
                "/fhir/Patient", json=make_patient(), headers={**FHIR_JSON, **headers}
            )
            assert created.status_code == 201, created.text
