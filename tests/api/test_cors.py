"""A browser booking app on an allowed origin may call the server: preflight answered, the
headers it needs allowed and exposed; other origins get no CORS headers. The sandbox says so in
its CapabilityStatement."""

from __future__ import annotations

from dataclasses import replace

import httpx

from server.app import create_app
from server.config import Settings

APP_ORIGIN = "https://rdv.example.org"


async def test_an_allowed_origin_gets_its_preflight_and_headers(settings: Settings) -> None:
    application = create_app(replace(settings, cors_origins=f"{APP_ORIGIN}, https://other.example"))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            preflight = await http.options(
                "/fhir/Appointment/$book",
                headers={
                    "Origin": APP_ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, if-match",
                },
            )
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
            assert "POST" in preflight.headers["access-control-allow-methods"]
            allowed = preflight.headers["access-control-allow-headers"].lower()
            assert {"authorization", "content-type", "if-match"} <= set(allowed.split(", "))
            assert "access-control-allow-credentials" not in preflight.headers

            answered = await http.get("/fhir/Slot", headers={"Origin": APP_ORIGIN})
            assert answered.status_code == 401  # CORS opens the door to browsers, not to data
            assert answered.headers["access-control-allow-origin"] == APP_ORIGIN
            assert "etag" in answered.headers["access-control-expose-headers"].lower()

            stranger = await http.get("/fhir/metadata", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in stranger.headers
            refused = await http.options(
                "/fhir/Slot",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
            )
            assert refused.status_code == 400
            assert (await http.get("/fhir/metadata")).json()["rest"][0]["security"]["cors"] is True


async def test_without_origins_no_cors_and_the_sandbox_says_so(settings: Settings) -> None:
    application = create_app(replace(settings, sandbox=True))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/fhir/metadata", headers={"Origin": APP_ORIGIN})
            assert "access-control-allow-origin" not in response.headers
            security = response.json()["rest"][0]["security"]
            assert "SANDBOX" in security["description"] and "service" not in security
