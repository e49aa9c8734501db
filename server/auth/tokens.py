"""The Authority: issues access tokens at POST /auth/token, and verifies them on every request.

An access token is a JWT signed with the server's key (see `keys`), carrying everything a request
needs to know about its caller: `sub`/`client_id`, `scope`, and the private claims `owners` (the
`Type/id` list the client acts for) and `admin`. So verifying one reads no store, and a verified
token is remembered (an LRU of token → Caller, until its `exp`): most requests cost one look-up.

    token request failures, as RFC 6749 §5.2 errors ({"error", "error_description"}):
     ├─ invalid_request         400  repeated parameter, more than one client named
     ├─ invalid_client          401  (Basic: with WWW-Authenticate) or 400: unknown, disabled,
     │                               wrong secret, bad or replayed assertion
     ├─ unsupported_grant_type  400  anything but client_credentials
     ├─ invalid_scope           400  nothing asked for is allowed
     └─ insecure_transport      400  plain http other than loopback
    request failures (FhirError 401, with WWW-Authenticate: Bearer): missing, malformed,
    expired, badly signed, or another issuer's or audience's token
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
from authlib.oauth2.rfc6749 import OAuth2Error
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError

from server.auth.caller import Caller
from server.auth.clients import Client
from server.auth.exchange import Reply, TokenExchange, error_reply
from server.auth.keys import Keys, SigningKey
from server.auth.keysets import KeySets
from server.auth.oauth import AppClient, TokenServer
from server.auth.scopes import Scopes
from server.fhir import outcome
from server.store.base import Store

CACHE_SIZE = 10_000
MAX_TOKEN_BYTES = 8192
REALM = 'Bearer realm="creneau"'


class Authority:
    def __init__(
        self,
        store: Store,
        *,
        fhir_base: str,
        token_seconds: int = 300,
        key_rotation_seconds: int = 86400,
        signing_key_file: Path | None = None,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`http` fetches clients' JWKS URLs (tests inject one over httpx.MockTransport);
        `clock` (Unix seconds) is what tokens are issued and checked by."""
        root = fhir_base.rstrip("/").removesuffix("/fhir")
        self.issuer = root
        self.audience = fhir_base.rstrip("/")
        self.token_endpoint = f"{root}/auth/token"
        self.jwks_uri = f"{root}/auth/jwks"
        self.token_seconds = token_seconds
        self.keys = Keys(
            store,
            rotation_seconds=key_rotation_seconds,
            token_seconds=token_seconds,
            key_file=signing_key_file,
            clock=clock,
        )
        self._store = store
        self._keysets = KeySets(http)
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()

    async def open(self) -> None:
        await self.keys.open()
        await self._keysets.open()

    async def close(self) -> None:
        await self._keysets.close()

    async def token_response(
        self, form: list[tuple[str, str]], headers: Mapping[str, str], url: str
    ) -> Reply:
        """POST /auth/token: status, JSON body and headers, success or RFC 6749 error."""
        exchange = TokenExchange(self._store, self._keysets, self.token_endpoint)
        try:
            request, client = await exchange.prepare(form, headers, url)
        except OAuth2Error as error:
            return error_reply(error)
        signing = await self.keys.signing_key()
        server = TokenServer(
            client, self.token_endpoint, lambda c, scope: self._mint(signing, c, scope)
        )
        # In a thread: a secret's scrypt hash and an assertion's signature take milliseconds.
        reply: Reply = await anyio.to_thread.run_sync(server.create_token_response, request)
        return await exchange.settle(server.assertion.seen, reply)

    async def issue(self, client: Client, scope: str | None = None) -> dict[str, Any]:
        """A token for a stored client without client authentication (the `creneau token`
        command, for the operator): the same scope rules as the token endpoint."""
        if client.disabled:
            raise outcome.bad_request(f"Client {client.client_id} is disabled")
        granted = AppClient(client).get_allowed_scope(scope)
        if not granted:
            raise outcome.bad_request("None of the scopes asked for is allowed to this client")
        return self._mint(await self.keys.signing_key(), client, granted)

    async def jwks(self) -> dict[str, Any]:
        return await self.keys.published()

    async def caller(
        self, authorization_header: str | None, on_behalf_of: dict[str, Any] | None = None
    ) -> Caller:
        """The caller a `Bearer` access token names; FhirError 401 otherwise."""
        token = _bearer(authorization_header)
        now = self._clock()
        known = self._verified.get(token)
        if known is not None and known[1] > now:
            self._verified.move_to_end(token)
            caller = known[0]
        else:
            caller, expires = await self._verify(token, now)
            self._remember(token, caller, expires)
        return replace(caller, on_behalf_of=on_behalf_of) if on_behalf_of else caller

    def _mint(self, key: SigningKey, client: Client, scope: str) -> dict[str, Any]:
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client.client_id,
            "client_id": client.client_id,
            "scope": scope,
            "iat": now,
            "exp": now + self.token_seconds,
            "jti": secrets.token_urlsafe(16),
            "owners": list(client.owners),
            "admin": client.admin,
        }
        header = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
        token = jwt.encode(header, claims, key.key, algorithms=[key.alg])
        return {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_seconds,
            "scope": scope,
        }

    async def _verify(self, token: str, now: float) -> tuple[Caller, float]:
        try:
            kid = jws.extract_compact(token.encode()).headers().get("kid")
        except (JoseError, ValueError, UnicodeError):
            raise unauthorized("The access token is not a signed JWT") from None
        key = await self.keys.find(kid) if isinstance(kid, str) else None
        if key is None:
            raise unauthorized("The access token is not signed by a key of this server")
        try:
            claims = jwt.decode(token, key.key, algorithms=[key.alg]).claims
            self._registry(now).validate(claims)
        except ExpiredTokenError:
            raise unauthorized("The access token has expired", code="expired") from None
        except (JoseError, ValueError) as error:
            raise unauthorized(f"Invalid access token: {error}") from None
        return _caller(claims), float(claims["exp"])

    def _registry(self, now: float) -> jwt.JWTClaimsRegistry:
        return jwt.JWTClaimsRegistry(
            now=int(now),
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
            scope={"essential": True},
        )

    def _remember(self, token: str, caller: Caller, expires: float) -> None:
        self._verified[token] = (caller, expires)
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)


def _caller(claims: dict[str, Any]) -> Caller:
    owners, admin, scope = claims.get("owners", []), claims.get("admin", False), claims["scope"]
    if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
        raise unauthorized("Invalid access token: owners")
    if not isinstance(admin, bool) or not isinstance(scope, str):
        raise unauthorized("Invalid access token: admin or scope")
    return Caller(str(claims["sub"]), Scopes.parse(scope), frozenset(owners), admin)


def _bearer(header: str | None) -> str:
    if not header:
        raise outcome.FhirError(
            401,
            [outcome.Issue("login", "This needs an access token: Authorization: Bearer ...")],
            headers={"WWW-Authenticate": REALM},
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise unauthorized("The Authorization header is not 'Bearer <token>'", "invalid_request")
    if len(token) > MAX_TOKEN_BYTES:
        raise unauthorized("The access token is too long")
    return token


def unauthorized(
    message: str, error: str = "invalid_token", code: str = "login"
) -> outcome.FhirError:
    """401 with the RFC 6750 challenge naming what was wrong (`code`: the FHIR IssueType)."""
    description = message.replace('"', "'").replace("\\", "/")
    challenge = f'{REALM}, error="{error}", error_description="{description}"'
    return outcome.FhirError(
        401, [outcome.Issue(code, message)], headers={"WWW-Authenticate": challenge}
    )
