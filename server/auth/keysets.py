"""Client key sets for private_key_jwt: registered inline, or fetched from the client's
`jwks_url` with httpx and cached.

A fetched set is reused for CACHE_SECONDS. An assertion whose `kid` is not in it (the client
rotated its keys) fetches again, but at most once every REFETCH_SECONDS per URL, so a stream of
made-up kids cannot turn into a stream of requests to the client's server. When a fetch fails
the last good set is used.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from server.auth.clients import Client

CACHE_SECONDS = 300.0
REFETCH_SECONDS = 10.0
MAX_BYTES = 64 * 1024
TIMEOUT = httpx.Timeout(5.0)


class KeySetUnavailable(Exception):
    """The client's jwks_url gave no usable key set."""


@dataclass(frozen=True)
class _Fetched:
    at: float
    keys: KeySet

    def has(self, kid: str | None) -> bool:
        return kid is None or any(key.kid == kid for key in self.keys.keys)


class KeySets:
    def __init__(self, http: httpx.AsyncClient | None = None) -> None:
        self._http = http
        self._own = http is None
        self._fetched: dict[str, _Fetched] = {}

    async def open(self) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)

    async def close(self) -> None:
        if self._own and self._http is not None:
            await self._http.aclose()
            self._http = None

    async def of(self, client: Client, kid: str | None) -> KeySet | None:
        """The keys that may have signed this client's assertion; None if it registered none."""
        if client.jwks is not None:
            return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
        if client.jwks_url:
            return await self._from_url(client.jwks_url, kid)
        return None

    async def _from_url(self, url: str, kid: str | None) -> KeySet:
        now = time.monotonic()
        cached = self._fetched.get(url)
        if cached is not None:
            age = now - cached.at
            if age < REFETCH_SECONDS or (age < CACHE_SECONDS and cached.has(kid)):
                return cached.keys
        try:
            keys = await self._fetch(url)
        except KeySetUnavailable:
            if cached is None:
                raise
            return cached.keys
        self._fetched[url] = _Fetched(now, keys)
        return keys

    async def _fetch(self, url: str) -> KeySet:
        if self._http is None:
            raise RuntimeError("KeySets is not open")
        try:
            async with self._http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise KeySetUnavailable(f"{url} answered {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise KeySetUnavailable(f"{url} sent more than {MAX_BYTES} bytes")
            return KeySet.import_key_set(json.loads(body))
        except (httpx.HTTPError, ValueError, TypeError, KeyError, JoseError) as error:
            raise KeySetUnavailable(f"{url}: {error}") from None
