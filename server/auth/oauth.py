"""The token endpoint's OAuth2 machinery, from authlib: the RFC 6749 client credentials grant,
and client authentication by client_secret_basic and client_secret_post (authlib's own) or
private_key_jwt (RFC 7523: authlib's JWTBearerClientAssertion, RS384 or ES384 assertions).

authlib's server is synchronous, and the store and the network are not. So whatever authlib will
ask for is fetched before calling it (the client, its key set, the signing key), and what must be
written after (the assertion's `jti`) is captured for the caller to write. One `TokenServer`
serves one request: no request's state is ever seen by another.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidClientError,
    InvalidScopeError,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from server.auth.clients import Client
from server.auth.scopes import Scope, Scopes

ASSERTION_ALGORITHMS = ("RS384", "ES384")
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
MAX_ASSERTION_SECONDS = 300  # SMART: an assertion expires at most five minutes ahead
LEEWAY = 30  # clock skew allowed between a client and this server, in seconds
Mint = Callable[[Client, str], dict[str, Any]]


class AppClient(ClientMixin):  # type: ignore[misc]
    """A registered client as authlib sees it, with the key set prefetched for its assertion."""

    def __init__(self, client: Client, keys: KeySet | None = None) -> None:
        self.client = client
        self.keys = keys

    def get_client_id(self) -> str:
        return self.client.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client.check_secret(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if method in ("client_secret_basic", "client_secret_post"):
            return self.client.secret_hash is not None
        if method == "private_key_jwt":
            return self.client.jwks is not None or bool(self.client.jwks_url)
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return bool(grant_type == "client_credentials")

    def get_allowed_scope(self, scope: str | None) -> str:
        """Of the scopes asked for, those the client is allowed; all it is allowed if none."""
        allowed = Scopes.parse(self.client.scope)
        if not scope or not scope.strip():
            return allowed.text()
        return merged(Scopes.parse(scope).intersect(allowed)).text()


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """A token request whose form was read already (asynchronously)."""

    def __init__(self, uri: str, headers: Mapping[str, str], form: dict[str, str]) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class PrivateKeyJwt(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client assertions as SMART Backend Services profiles them: RS384 or ES384, `aud`
    the token endpoint, `exp` at most five minutes ahead, a `jti` never seen before."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, token_endpoint: str) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)
        self.token_endpoint = token_endpoint
        self.seen: tuple[str, str, float] | None = None  # client_id, jti, until when to refuse it

    def get_audiences(self) -> list[str]:
        return [self.token_endpoint]

    def resolve_client_public_key(self, client: AppClient) -> KeySet:
        if client.keys is None:
            raise InvalidClientError(description="The client has no key to check assertions")
        return client.keys

    def process_assertion_claims(self, assertion: str, resolve_key: KeySet) -> dict[str, Any]:
        """authlib's, with the signing algorithms narrowed to the two SMART names."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except JoseError as error:
            raise InvalidClientError(
                description=printable(error.description or str(error.error))
            ) from error
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        exp, latest = claims.get("exp"), time.time() + MAX_ASSERTION_SECONDS + LEEWAY
        if isinstance(exp, int | float) and not isinstance(exp, bool) and exp > latest:
            raise InvalidClientError(
                description="The assertion expires more than 5 minutes ahead (exp)"
            )
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: Any) -> bool:
        """Only capture it: the caller records it (atomically, in the store) after authlib."""
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            return False
        self.seen = (str(claims["sub"]), jti, float(claims["exp"]) + LEEWAY)
        return True


class CredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        if not self.request.client.get_allowed_scope(self.request.payload.scope):
            raise InvalidScopeError(
                description="None of the scopes asked for is allowed to this client"
            )


class TokenServer(AuthorizationServer):  # type: ignore[misc]
    """authlib's authorization server for one token request, knowing its one client."""

    def __init__(self, client: AppClient | None, token_endpoint: str, mint: Mint) -> None:
        super().__init__()
        self.client = client
        self.mint = mint
        self.assertion = PrivateKeyJwt(token_endpoint)
        self.register_client_auth_method("private_key_jwt", self.assertion)
        self.register_grant(CredentialsGrant)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> AppClient | None:
        if self.client is not None and client_id == self.client.get_client_id():
            return self.client
        return None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Nothing to save: access tokens are signed JWTs, verified without a store read."""

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        return status, body, dict(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals: nothing listens."""

    def _generate(self, *, client: AppClient, scope: str | None, **_: Any) -> dict[str, Any]:
        return self.mint(client.client, client.get_allowed_scope(scope))


def merged(scopes: Scopes) -> Scopes:
    """The same permissions, written once per type: `Appointment.r Appointment.cr` is
    `Appointment.cr`, and a type's scope that `*` already covers is left out."""
    by_type: dict[str, frozenset[str]] = {}
    for scope in scopes.granted:
        by_type[scope.resource_type] = by_type.get(scope.resource_type, frozenset()) | (
            scope.permissions
        )
    everything = by_type.get("*", frozenset())
    return Scopes(
        tuple(
            Scope(kind, perms)
            for kind, perms in by_type.items()
            if kind == "*" or not perms <= everything
        )
    )


def printable(text: str) -> str:
    """Text fit for an RFC 6749 error_description: printable ASCII, no quote nor backslash."""
    return "".join(c for c in text if 0x20 <= ord(c) <= 0x7E and c not in '"\\')[:200]
