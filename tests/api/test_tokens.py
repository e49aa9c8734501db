"""POST /auth/token over HTTP, on both stores: SMART Backend Services client credentials with
private_key_jwt (RS384, ES384), client_secret_basic and client_secret_post; every refusal as an
RFC 6749 error."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.auth import clients
from server.config import Settings
from tests.api.auth_setup import (
    EC_KEY,
    OTHER_KEY,
    RSA_KEY,
    TOKEN_URL,
    RemoteKeys,
    Server,
    assertion,
    assertion_form,
    public_jwks,
    serve,
)
from tests.conftest import TimeTravel

CREDENTIALS = {"grant_type": "client_credentials"}


@pytest.fixture
async def server(settings: Settings, time_travel: TimeTravel) -> AsyncIterator[Server]:
    async with serve(settings, time_travel) as running:
        yield running


def granted(response: httpx.Response, scope: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == scope
    assert response.headers["cache-control"] == "no-store"
    return body


def refused(response: httpx.Response, error: str, status: int = 400) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == error
    return str(response.json().get("error_description", ""))


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
async def test_private_key_jwt(server: Server, alg: str) -> None:
    client, _ = await server.register(secret=False)
    form = assertion_form(assertion(client.client_id, alg), "system/Slot.rs")
    body = granted(await server.token(form), "system/Slot.rs")
    caller = await server.authority.caller(f"Bearer {body['access_token']}")
    assert caller.client_id == client.client_id
    assert caller.scopes.allows("Slot", "s") and not caller.scopes.allows("Slot", "c")


async def test_client_secret_basic_and_post(server: Server) -> None:
    client, secret = await server.register(jwks=None)
    assert secret is not None
    basic = await server.token(CREDENTIALS, auth=(client.client_id, secret))
    granted(basic, clients.BOOKING_SCOPE)  # no scope asked: all the client may have
    post = {**CREDENTIALS, "client_id": client.client_id, "client_secret": secret}
    granted(await server.token({**post, "scope": "system/Appointment.cr"}), "system/Appointment.cr")


async def test_scope_is_what_is_asked_within_what_is_allowed(server: Server) -> None:
    client, secret = await server.register(jwks=None)
    asked = "system/Slot.read system/Appointment.* system/Schedule.cud patient/*.read"
    body = granted(
        await server.token({**CREDENTIALS, "scope": asked}, auth=(client.client_id, str(secret))),
        "system/Slot.rs system/Appointment.cruds",
    )
    assert body["scope"] == "system/Slot.rs system/Appointment.cruds"
    refusal = await server.token(
        {**CREDENTIALS, "scope": "system/Schedule.cud"}, auth=(client.client_id, str(secret))
    )
    refused(refusal, "invalid_scope")


def _tampered(signed: str) -> str:
    header, payload, signature = signed.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = claims["iss"]  # same values, re-encoded differently: the signature breaks
    claims["scope"] = "system/*.cruds"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", "expired"),
        ("too-long", "5 minutes"),
        ("tampered", ""),
        ("wrong-aud", "aud"),
        ("unregistered-key", ""),
        ("rs256", "not allowed"),
        ("no-jti", "jti"),
    ],
)
async def test_bad_assertions_are_refused(server: Server, case: str, expected: str) -> None:
    client, _ = await server.register(secret=False)
    cid = client.client_id
    signed = {
        "expired": lambda: assertion(cid, expires_in=-120),
        "too-long": lambda: assertion(cid, expires_in=600),
        "tampered": lambda: _tampered(assertion(cid)),
        "wrong-aud": lambda: assertion(cid, aud="https://elsewhere/auth/token"),
        "unregistered-key": lambda: assertion(cid, key=OTHER_KEY),
        "rs256": lambda: assertion(cid, "RS256", key=RSA_KEY),
        "no-jti": lambda: assertion(cid, jti=None),
    }[case]()
    description = refused(await server.token(assertion_form(signed)), "invalid_client")
    assert expected.lower() in description.lower()


async def test_replayed_assertion_is_refused(server: Server) -> None:
    client, _ = await server.register(secret=False)
    form = assertion_form(assertion(client.client_id))
    granted(await server.token(form), clients.BOOKING_SCOPE)
    assert "jti" in refused(await server.token(form), "invalid_client")


async def test_replay_is_refused_by_another_worker(
    settings: Settings, time_travel: TimeTravel
) -> None:
    """Two app instances on one store, as two worker processes are."""
    async with serve(settings, time_travel) as first, serve(settings, time_travel) as second:
        client, _ = await first.register(secret=False)
        form = assertion_form(assertion(client.client_id))
        body = granted(await first.token(form), clients.BOOKING_SCOPE)
        refused(await second.token(form), "invalid_client")
        caller = await second.authority.caller(f"Bearer {body['access_token']}")
        assert caller.client_id == client.client_id  # and the other worker's token verifies


async def test_unknown_client(server: Server) -> None:
    refused(await server.token(assertion_form(assertion("nobody"))), "invalid_client")
    basic = await server.token(CREDENTIALS, auth=("nobody", "secret"))
    refused(basic, "invalid_client", 401)
    assert basic.headers["www-authenticate"].startswith("Basic ")


async def test_wrong_secret(server: Server) -> None:
    client, _ = await server.register(jwks=None)
    basic = await server.token(CREDENTIALS, auth=(client.client_id, "not-the-secret"))
    refused(basic, "invalid_client", 401)
    assert basic.headers["www-authenticate"].startswith("Basic ")
    post = {**CREDENTIALS, "client_id": client.client_id, "client_secret": "not-the-secret"}
    refused(await server.token(post), "invalid_client", 401)


async def test_disabled_client(server: Server) -> None:
    client, secret = await server.register()
    await clients.disable(server.store, client.client_id)
    refused(await server.token(assertion_form(assertion(client.client_id))), "invalid_client")
    basic = await server.token(CREDENTIALS, auth=(client.client_id, str(secret)))
    assert "disabled" in refused(basic, "invalid_client", 401)
    assert "www-authenticate" in basic.headers


async def test_rotated_secret_replaces_the_old_one(server: Server) -> None:
    client, old = await server.register(jwks=None)
    _, new = await clients.rotate_secret(server.store, client.client_id)
    refused(
        await server.token(CREDENTIALS, auth=(client.client_id, str(old))), "invalid_client", 401
    )
    granted(await server.token(CREDENTIALS, auth=(client.client_id, new)), clients.BOOKING_SCOPE)


async def test_unsupported_grant_type(server: Server) -> None:
    client, secret = await server.register()
    for grant in ("password", "authorization_code", ""):
        response = await server.token({"grant_type": grant}, auth=(client.client_id, str(secret)))
        refused(response, "unsupported_grant_type")


async def test_malformed_requests(server: Server) -> None:
    client, secret = await server.register()
    as_json = await server.http.post("/auth/token", json=CREDENTIALS)
    refused(as_json, "invalid_request")
    repeated = await server.http.post(
        "/auth/token",
        content="grant_type=client_credentials&scope=a&scope=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(client.client_id, str(secret)),
    )
    assert "scope" in refused(repeated, "invalid_request")
    two_clients = assertion_form(assertion(client.client_id))
    both = await server.token(two_clients, auth=("someone-else", "x"))
    refused(both, "invalid_request")
    garbage = await server.token(assertion_form("not.a.jwt"))
    refused(garbage, "invalid_client")
    unauthenticated = await server.token(CREDENTIALS)
    refused(unauthenticated, "invalid_client", 401)


async def test_plain_http_is_refused(settings: Settings, time_travel: TimeTravel) -> None:
    """authlib's rule: OAuth2 over https, or plain http on loopback only."""
    async with serve(settings, time_travel) as server:
        client, secret = await server.register()
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server.app), base_url="http://test"
        )
        async with http:
            plain = await http.post(
                "/auth/token", data=CREDENTIALS, auth=(client.client_id, str(secret))
            )
        refused(plain, "insecure_transport")


async def test_jwks_url_client(settings: Settings, time_travel: TimeTravel) -> None:
    remote = RemoteKeys()
    url = "https://app.example/.well-known/jwks.json"
    remote.published[url] = public_jwks(EC_KEY)
    async with serve(settings, time_travel, remote) as server:
        client, _ = await server.register(secret=False, jwks=None, jwks_url=url)
        for _ in range(2):
            granted(
                await server.token(assertion_form(assertion(client.client_id))),
                clients.BOOKING_SCOPE,
            )
        assert remote.fetches == [url]  # fetched once, then cached
        refused(
            await server.token(assertion_form(assertion(client.client_id, key=OTHER_KEY))),
            "invalid_client",
        )


async def test_unreachable_jwks_url(settings: Settings, time_travel: TimeTravel) -> None:
    async with serve(settings, time_travel, RemoteKeys()) as server:
        client, _ = await server.register(
            secret=False, jwks=None, jwks_url="https://gone.example/k"
        )
        response = await server.token(assertion_form(assertion(client.client_id)))
        assert "jwks_url" in refused(response, "invalid_client")


async def test_smart_configuration_and_jwks(server: Server) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        config = (await server.http.get(path)).json()
        assert config["token_endpoint"] == TOKEN_URL
        assert config["grant_types_supported"] == ["client_credentials"]
        assert config["token_endpoint_auth_methods_supported"] == [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
        ]
        assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
        assert "client-confidential-asymmetric" in config["capabilities"]
        assert "permission-v2" in config["capabilities"]
        assert config["jwks_uri"] == "https://test/auth/jwks"
    published = (await server.http.get("/auth/jwks")).json()["keys"]
    assert published and all("d" not in key and key["alg"] == "ES256" for key in published)


async def test_assertion_at_the_five_minute_limit_is_accepted(server: Server) -> None:
    client, _ = await server.register(secret=False)
    signed = assertion(client.client_id, "RS384", exp=int(time.time()) + 300)
    granted(await server.token(assertion_form(signed)), clients.BOOKING_SCOPE)


async def test_client_without_credentials_gets_no_token_here(server: Server) -> None:
    """Such a client gets tokens from the operator only (`creneau token`)."""
    client, _ = await server.register(secret=False, jwks=None)
    basic = await server.token(CREDENTIALS, auth=(client.client_id, "anything"))
    refused(basic, "invalid_client", 401)
    refused(await server.token(assertion_form(assertion(client.client_id))), "invalid_client")
    assert (await server.authority.issue(client))["access_token"]
