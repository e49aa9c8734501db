"""Access tokens on requests: verified without a store read, refused with 401 and a Bearer
challenge when missing, expired, tampered or not ours; the signing key rotation; the admin API
for clients."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from server.auth import clients
from server.config import Settings
from server.fhir.outcome import FhirError
from tests.api.auth_setup import Server, serve
from tests.conftest import TimeTravel

PERIOD = 3600


@pytest.fixture
async def server(settings: Settings, time_travel: TimeTravel) -> AsyncIterator[Server]:
    async with serve(settings, time_travel, key_rotation_seconds=PERIOD) as running:
        yield running


async def token_for(server: Server, **options: Any) -> str:
    client, _ = await server.register(secret=False, **options)
    issued = await server.authority.issue(client)
    return str(issued["access_token"])


async def refusal(server: Server, header: str | None) -> FhirError:
    with pytest.raises(FhirError) as raised:
        await server.authority.caller(header)
    error = raised.value
    assert error.status == 401
    assert error.headers["WWW-Authenticate"].startswith('Bearer realm="creneau"')
    return error


async def crafted(server: Server, kid: str | None = "", **claims: Any) -> str:
    """A token signed with the server's own key, with some claims (or its kid) changed."""
    key = await server.authority.keys.signing_key()
    now = int(time.time())
    body: dict[str, Any] = {"iss": "https://test", "aud": "https://test/fhir", "sub": "x"}
    body["scope"] = "system/*.rs"
    body = {**body, "iat": now, "exp": now + 60, **claims}
    header = {"alg": key.alg, **({"kid": kid or key.kid} if kid is not None else {})}
    return jwt.encode(header, body, key.key, [key.alg])


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


async def test_valid_token_names_its_caller(server: Server) -> None:
    token = await token_for(server, owners=["Organization/o1"], scope="system/Slot.cruds")
    caller = await server.authority.caller(f"Bearer {token}")
    assert caller.scopes.text() == "system/Slot.cruds"
    assert caller.owners == frozenset({"Organization/o1"}) and not caller.admin
    again = await server.authority.caller(f"bearer {token}", on_behalf_of={"reference": "P/1"})
    assert again.client_id == caller.client_id and again.on_behalf_of == {"reference": "P/1"}


async def test_missing_and_malformed(server: Server) -> None:
    missing = await refusal(server, None)
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="creneau"'
    for header in ("Basic abc", "Bearer", "Bearer a b", "Bearer not-a-jwt", "Bearer a.b.c"):
        assert "error=" in (await refusal(server, header)).headers["WWW-Authenticate"]


async def test_expired_token(server: Server, time_travel: TimeTravel) -> None:
    token = await token_for(server)
    await server.authority.caller(f"Bearer {token}")  # verified, and remembered
    time_travel.forward(timedelta(seconds=301))
    error = await refusal(server, f"Bearer {token}")
    assert error.issues[0].code == "expired"
    assert 'error="invalid_token"' in error.headers["WWW-Authenticate"]


async def test_tampered_token(server: Server) -> None:
    token = await token_for(server, scope="system/Slot.rs")
    header, payload, signature = token.split(".")
    other = (await token_for(server, admin=True)).split(".")[1]
    await refusal(server, f"Bearer {header}.{other}.{signature}")
    await refusal(server, f"Bearer {header}.{payload}.{signature[:-4]}AAAA")


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "https://elsewhere/fhir"},
        {"iss": "https://elsewhere"},
        {"exp": int(time.time()) - 10},
        {"owners": "Organization/o1"},
        {"scope": None},
        {"kid": None},
        {"kid": "made-up"},
    ],
)
async def test_tokens_not_for_this_server(server: Server, changes: dict[str, Any]) -> None:
    await server.authority.caller(f"Bearer {await crafted(server)}")  # the crafting is sound
    await refusal(server, f"Bearer {await crafted(server, **changes)}")


async def test_key_rotation(server: Server, time_travel: TimeTravel) -> None:
    period_end = (int(time_travel.now().timestamp()) // PERIOD + 1) * PERIOD
    time_travel.forward(timedelta(seconds=period_end - time_travel.now().timestamp() - 10))
    old = await token_for(server)
    time_travel.forward(timedelta(seconds=20))  # into the next period: a new key signs
    new = await token_for(server)
    old_kid, new_kid = kid_of(old), kid_of(new)
    assert old_kid != new_kid
    assert (await server.authority.caller(f"Bearer {old}")).client_id  # the old key still verifies
    published = {key["kid"] for key in (await server.http.get("/auth/jwks")).json()["keys"]}
    assert {old_kid, new_kid} <= published
    time_travel.forward(timedelta(seconds=300))  # every token the old key signed has expired
    published = {key["kid"] for key in (await server.http.get("/auth/jwks")).json()["keys"]}
    assert old_kid not in published and new_kid in published
    assert await server.authority.keys.find(old_kid) is None
    await refusal(server, f"Bearer {old}")


async def test_workers_share_signing_keys(settings: Settings, time_travel: TimeTravel) -> None:
    async with serve(settings, time_travel) as first, serve(settings, time_travel) as second:
        assert (await first.authority.jwks()) == (await second.authority.jwks())
        token = await token_for(first)
        assert (await second.authority.caller(f"Bearer {token}")).client_id


async def test_admin_api(server: Server) -> None:
    anonymous = await server.http.get("/auth/clients")
    assert anonymous.status_code == 401 and "www-authenticate" in anonymous.headers
    booking = {"Authorization": f"Bearer {await token_for(server)}"}
    for method, path in (("GET", ""), ("POST", "/x/disable"), ("POST", "/x/rotate-secret")):
        refused = await server.http.request(method, f"/auth/clients{path}", headers=booking)
        assert refused.status_code == 403, path
    assert (
        await server.http.post("/auth/clients", json={"name": "x"}, headers=booking)
    ).status_code == 403
    admin = {"Authorization": f"Bearer {await token_for(server, admin=True)}"}
    created = await server.http.post(
        "/auth/clients",
        json={"name": "Agenda", "owners": ["Practitioner/p1"], "secret": True},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["client_secret"] and body["scope"] == clients.BOOKING_SCOPE
    assert "secret_hash" not in body
    listed = (await server.http.get("/auth/clients", headers=admin)).json()
    assert body["client_id"] in {c["client_id"] for c in listed}
    rotated = await server.http.post(
        f"/auth/clients/{body['client_id']}/rotate-secret", headers=admin
    )
    assert rotated.json()["client_secret"] != body["client_secret"]
    disabled = await server.http.post(f"/auth/clients/{body['client_id']}/disable", headers=admin)
    assert disabled.json()["disabled"] is True
    missing = await server.http.post("/auth/clients/nobody/disable", headers=admin)
    assert missing.status_code == 404
    invalid = await server.http.post(
        "/auth/clients", json={"name": "x", "owners": ["Patient/1"], "secret": True}, headers=admin
    )
    assert invalid.status_code == 400


async def test_admin_api_in_sandbox(settings: Settings, time_travel: TimeTravel) -> None:
    async with serve(settings, time_travel, sandbox=True) as server:
        assert (await server.http.get("/auth/clients")).status_code == 200


@pytest.mark.parametrize("kind", ["rsa-pem", "ec-jwk"])
async def test_signing_key_file(
    settings: Settings, time_travel: TimeTravel, tmp_path: Path, kind: str
) -> None:
    """A configured key signs every token, is the only key published, and never rotates."""
    path = tmp_path / "signing-key"
    if kind == "rsa-pem":
        path.write_bytes(RSAKey.generate_key(2048, private=True).as_pem(private=True))
    else:
        key = ECKey.generate_key("P-256", parameters={"kid": "file-key"}, private=True)
        path.write_text(json.dumps(key.as_dict(private=True)))
    async with serve(
        settings, time_travel, signing_key_file=path, key_rotation_seconds=1
    ) as server:
        token = await token_for(server)
        published = (await server.http.get("/auth/jwks")).json()["keys"]
        assert [k["kid"] for k in published] == [kid_of(token)]
        assert published[0]["alg"] == ("RS256" if kind == "rsa-pem" else "ES256")
        assert "d" not in published[0]
        time_travel.forward(timedelta(seconds=120))
        assert kid_of(await token_for(server)) == kid_of(token)
        assert (await server.authority.caller(f"Bearer {token}")).client_id
