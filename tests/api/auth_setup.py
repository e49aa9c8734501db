"""Client keys, signed client assertions, and the app served over https with its real lifespan:
shared by the token tests. Keys are generated here, assertions signed with joserfc."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from server.app import create_app
from server.auth import clients
from server.auth.tokens import Authority
from server.config import Settings
from server.store.base import Store

if TYPE_CHECKING:
    from tests.conftest import TimeTravel

ORIGIN = "https://test"
TOKEN_URL = f"{ORIGIN}/auth/token"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)
EC_KEY = ECKey.generate_key("P-384", parameters={"kid": "ec-1"}, private=True)
KEYS: dict[str, RSAKey | ECKey] = {"RS384": RSA_KEY, "ES384": EC_KEY}
OTHER_KEY = ECKey.generate_key("P-384", parameters={"kid": "ec-1"}, private=True)


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def assertion(
    client_id: str,
    alg: str = "ES384",
    *,
    key: RSAKey | ECKey | None = None,
    expires_in: int = 120,
    **claims: Any,
) -> str:
    """A client assertion as SMART Backend Services asks: iss = sub = client_id, aud the token
    endpoint, a fresh jti; `claims` override any of them."""
    signing = key or KEYS[alg]
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + expires_in,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode({"alg": alg, "kid": signing.kid, "typ": "JWT"}, body, signing, [alg])


def assertion_form(signed: str, scope: str | None = None) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": signed,
    }
    return {**form, "scope": scope} if scope else form


@dataclass
class RemoteKeys:
    """What the clients' JWKS URLs serve, over httpx.MockTransport; `fetches` counts requests."""

    published: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetches: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.fetches.append(url)
        if url not in self.published:
            return httpx.Response(404)
        return httpx.Response(200, json=self.published[url])


@dataclass
class Server:
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def store(self) -> Store:
        store: Store = self.app.state.store
        return store

    @property
    def authority(self) -> Authority:
        authority: Authority = self.app.state.authority
        return authority

    async def register(self, **options: Any) -> tuple[clients.Client, str | None]:
        """A booking-app client with the test keys and a secret, unless told otherwise."""
        wanted = {"name": "Booking app", "secret": True, "jwks": public_jwks(RSA_KEY, EC_KEY)}
        return await clients.create(self.store, **{**wanted, **options})

    async def token(self, form: dict[str, str], **options: Any) -> httpx.Response:
        return await self.http.post("/auth/token", data=form, **options)


@asynccontextmanager
async def serve(
    settings: Settings, time_travel: TimeTravel, remote: RemoteKeys | None = None, **changes: Any
) -> AsyncIterator[Server]:
    """The app on `settings` (its store), served as https://test, its lifespan running; tokens
    last the default 300 s unless `changes` say otherwise."""
    secure = replace(settings, **{"base_url": f"{ORIGIN}/fhir", "token_seconds": 300, **changes})
    fetcher = httpx.AsyncClient(transport=httpx.MockTransport((remote or RemoteKeys()).handle))
    app = create_app(secure, clock=time_travel.now, jwks_http=fetcher)
    async with fetcher, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            yield Server(app, http)
