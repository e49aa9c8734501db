"""One token request, before and after authlib runs it (see `oauth`).

Before: the form is checked (no parameter twice), the one client it names (by HTTP Basic,
`client_id`, or the assertion's unverified `sub`) is read from the store, a disabled client is
refused, and the key set its assertion may be signed with is fetched. After: the `jti` of an
assertion authlib accepted is added to the store, atomically, until the assertion could no longer
be accepted; if it was there already (a replay, on this worker or another) the token is withheld.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.util import extract_basic_authorization

from server.auth import clients
from server.auth.keysets import KeySets, KeySetUnavailable
from server.auth.oauth import AppClient, FormRequest, PrivateKeyJwt, printable
from server.store.base import Store

JTI_KIND = "jti"
Reply = tuple[int, dict[str, Any], dict[str, str]]


def error_reply(error: OAuth2Error) -> Reply:
    status, body, headers = error()
    return status, body, dict(headers)


class TokenExchange:
    def __init__(self, store: Store, keysets: KeySets, token_endpoint: str) -> None:
        self._store = store
        self._keysets = keysets
        self._token_endpoint = token_endpoint

    async def prepare(
        self, form: list[tuple[str, str]], headers: Mapping[str, str], url: str
    ) -> tuple[FormRequest, AppClient | None]:
        """The request for authlib and its client (None if unknown: authlib refuses it).
        Raises OAuth2Error."""
        fields = _fields(form)
        request = FormRequest(url, headers, fields)  # refuses plain http first
        basic_id = extract_basic_authorization(headers)[0]
        assertion = fields.get("client_assertion")
        kid, sub = self._peek(assertion) if assertion else (None, None)
        named = {name for name in (basic_id, fields.get("client_id"), sub) if name}
        if len(named) > 1:
            raise InvalidRequestError(description="The request names more than one client")
        client_id = named.pop() if named else ""
        client = await clients.get(self._store, client_id) if 0 < len(client_id) <= 200 else None
        if client is None:
            return request, None
        if client.disabled:
            raise InvalidClientError(
                status_code=401 if basic_id else 400, description="This client is disabled"
            )
        try:
            keys = await self._keysets.of(client, kid) if assertion else None
        except KeySetUnavailable:
            raise InvalidClientError(
                description="The client's key set could not be fetched from its jwks_url"
            ) from None
        return request, AppClient(client, keys)

    async def settle(self, seen: tuple[str, str, float] | None, reply: Reply) -> Reply:
        """Record the assertion's jti; a jti seen before withholds the token."""
        if seen is None:
            return reply
        client_id, jti, until = seen
        fresh = await self._store.add_record(
            JTI_KIND, f"{client_id}/{jti}", {"client_id": client_id, "jti": jti}, until
        )
        if fresh or reply[0] != 200:
            return reply
        return error_reply(InvalidClientError(description="The assertion's jti was used before"))

    def _peek(self, assertion: str) -> tuple[str | None, str | None]:
        """The assertion's `kid` and `sub`, unverified: which client, which key to fetch."""
        header, claims = PrivateKeyJwt(self._token_endpoint).extract_assertion(assertion)
        kid, sub = header.get("kid"), claims.get("sub")
        return (kid if isinstance(kid, str) else None), (sub if isinstance(sub, str) else None)


def _fields(form: list[tuple[str, str]]) -> dict[str, str]:
    """RFC 6749 §3.2: a parameter sent more than once is an invalid_request."""
    fields: dict[str, str] = {}
    for name, value in form:
        if name in fields:
            raise InvalidRequestError(description=f"Repeated parameter: {printable(name)}")
        fields[name] = value
    return fields
