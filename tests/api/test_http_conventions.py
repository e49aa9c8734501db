"""The HTTP behaviour integrators expect of any FHIR server: HEAD, conditional reads, If-Match *,
Accept q-values, the old FHIR JSON media type, 405 with Allow, health checks, request ids,
gzip, and a conditional create whose search is in the URL."""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import replace

import httpx
import pytest

from server.app import create_app
from server.config import Settings
from tests.factories import FHIR_JSON, create, make_practitioner, ref


async def test_head_answers_as_get_without_a_body(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner())
    for url in (f"/fhir/{ref(practitioner)}", "/fhir/Practitioner?family=Martin", "/fhir/metadata"):
        got, head = await client.get(url), await client.head(url)
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
    assert (await client.head(f"/fhir/{ref(practitioner)}")).headers["etag"] == 'W/"1"'


async def test_conditional_reads_answer_304_while_unchanged(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner())
    url = f"/fhir/{ref(practitioner)}"
    first = await client.get(url)
    tag, modified = first.headers["etag"], first.headers["last-modified"]
    for headers in (
        {"If-None-Match": tag},
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
    ):
        unchanged = await client.get(url, headers=headers)
        assert unchanged.status_code == 304 and unchanged.content == b"", headers
        assert unchanged.headers["etag"] == tag
    await client.put(url, json={**first.json(), "active": False}, headers=FHIR_JSON)
    changed = await client.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed.json()["meta"]["versionId"] == "2"
    odd = await client.get(url, headers={"If-Modified-Since": "yesterday"})
    assert odd.status_code == 200  # an unreadable date is ignored


async def test_if_match_star_is_any_current_version(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner())
    url = f"/fhir/{ref(practitioner)}"
    updated = await client.put(url, json=practitioner, headers={**FHIR_JSON, "If-Match": "*"})
    assert updated.status_code == 200, updated.text
    assert (await client.delete(url)).status_code == 204
    gone = await client.put(url, json=practitioner, headers={**FHIR_JSON, "If-Match": "*"})
    assert gone.status_code == 412


async def test_accept_q_values_and_the_old_fhir_json_type(client: httpx.AsyncClient) -> None:
    refused = await client.get("/fhir/metadata", headers={"Accept": "application/json;q=0"})
    assert refused.status_code == 406
    assert refused.json()["resourceType"] == "OperationOutcome"
    weighed = await client.get(
        "/fhir/metadata", headers={"Accept": "application/xml;q=0.9, application/fhir+json;q=0.5"}
    )
    assert weighed.status_code == 200
    old = await client.post(
        "/fhir/Practitioner",
        content=b'{"resourceType": "Practitioner", "active": true}',
        headers={"Content-Type": "application/json+fhir", "Accept": "application/json+fhir"},
    )
    assert old.status_code == 201, old.text


async def test_405_says_what_is_allowed(client: httpx.AsyncClient) -> None:
    for method, url, allowed in (
        ("PATCH", "/fhir/metadata", "GET, HEAD"),
        ("DELETE", "/fhir/Practitioner/_history", "GET, HEAD"),
    ):
        answer = await client.request(method, url)
        assert answer.status_code == 405 and answer.headers["allow"] == allowed, url
        assert answer.json()["resourceType"] == "OperationOutcome"


async def test_health_checks(client: httpx.AsyncClient) -> None:
    for url in ("/health", "/health/ready"):
        answer = await client.get(url, headers={"Authorization": ""})
        assert answer.status_code == 200 and answer.json() == {"status": "pass"}, url


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/fhir/metadata", headers={"X-Request-ID": "lb-42.a"})
    assert echoed.headers["x-request-id"] == "lb-42.a"
    made = await client.get("/fhir/Nothing/1")
    assert made.status_code == 404 and len(made.headers["x-request-id"]) == 36
    odd = await client.get("/fhir/metadata", headers={"X-Request-ID": "a b\\c"})
    assert odd.headers["x-request-id"] != "a b\\c"


async def test_large_answers_are_gzipped(client: httpx.AsyncClient) -> None:
    raw = await client.get("/fhir/metadata", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.json()["resourceType"] == "CapabilityStatement"  # httpx inflates it
    async with client.stream("GET", "/fhir/metadata", headers={"Accept-Encoding": "gzip"}) as r:
        compressed = b"".join([chunk async for chunk in r.aiter_raw()])
    assert gzip.decompress(compressed).startswith(b"{")


async def test_a_search_in_the_url_of_a_create_is_its_condition(client: httpx.AsyncClient) -> None:
    """`POST Practitioner?identifier=…` (fhirpy's get_or_create): created once, found after."""
    body = {
        "resourceType": "Practitioner",
        "identifier": [{"system": "https://example.org/staff", "value": "m-17"}],
    }
    url = "/fhir/Practitioner?identifier=https://example.org/staff|m-17"
    first = await client.post(url, json=body, headers=FHIR_JSON)
    again = await client.post(url, json=body, headers=FHIR_JSON)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    formatted = await client.post(f"{url}&_format=json", json=body, headers=FHIR_JSON)
    assert formatted.status_code == 200  # _format says how to answer, not which resource
    differ = await client.post(
        url, json=body, headers={**FHIR_JSON, "If-None-Exist": "identifier=other|1"}
    )
    assert differ.status_code == 400


async def test_the_api_docs_work_offline(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


async def test_the_access_log_line(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """With `--access-log`: the request id, method, path, status, time and a refusal's reason."""
    caplog.set_level(logging.INFO, logger="uvicorn.error.access")
    app = create_app(replace(settings, access_log=True, sandbox=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            await http.get("/fhir/Nothing/1", headers={"X-Request-ID": "trace-7"})
            await http.get("/fhir/metadata", headers={"X-Request-ID": "trace-8"})
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error.access"]
    refused = next(line for line in lines if line.startswith("trace-7 "))
    assert refused.startswith("trace-7 GET /fhir/Nothing/1 404 ") and "not served" in refused
    assert re.match(
        r"^trace-8 GET /fhir/metadata 200 [0-9.]+ ms$",
        next(line for line in lines if line.startswith("trace-8 ")),
    )
