"""The server's keys for signing access tokens, and publishing them at /auth/jwks.

Keys made here are ES256 (P-256) and kept as store records of kind "signing-key", so every worker
process signs and verifies with the same ones. Time is cut into rotation periods
(`key_rotation_seconds`), each with its key, made one period ahead (so it is published before it
signs, and workers load it before they see tokens it signed) with `add_record` keyed by the
period: when several workers make the same period's key at once, exactly one is stored and the
others load it. A key signs during its period only, and stays published until every token it
signed has expired (period end + token lifetime); then it is dropped.

With `signing_key_file` (a private JWK as JSON, or PEM; EC P-256 signs ES256, RSA signs RS256)
that one key signs and nothing rotates: rotating it is the operator's, by replacing the file.
A store holds signing keys in clear, so whoever reads the database could mint tokens: the key
file keeps them apart.

Verification keys are kept in memory. An unknown `kid` reloads them from the store at most once
every RELOAD_SECONDS, so tokens with made-up kids cannot cost a store read each.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwk
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from server.store.base import Store

KIND = "signing-key"
RELOAD_SECONDS = 5.0
ALGORITHMS = {"EC": "ES256", "RSA": "RS256"}
PrivateKey = ECKey | RSAKey


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: PrivateKey
    not_after: float  # the end of the period it signs in
    expires_at: float  # when the last token it signed has expired: then dropped

    def public(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg, "use": "sig"}


class Keys:
    def __init__(
        self,
        store: Store,
        *,
        rotation_seconds: int,
        token_seconds: int,
        key_file: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._period = max(rotation_seconds, 1)
        self._lifetime = token_seconds
        self._file_key = read_key_file(key_file) if key_file else None
        self._clock = clock
        self._known: dict[str, SigningKey] = {}
        self._loaded_at = -math.inf
        self._making = asyncio.Lock()

    async def open(self) -> None:
        if self._file_key is None:
            await self._reload()
            await self.signing_key()

    async def signing_key(self) -> SigningKey:
        """The key to sign with now. This period's key and the next one are made when missing:
        the next is published a period ahead, and every worker that signs learns it early."""
        if self._file_key is not None:
            return self._file_key
        now = self._clock()
        current, following = self._of_period(now), self._of_period(now + self._period)
        if current is None or following is None:
            async with self._making:
                current = await self._ensure(now)
                await self._ensure(now + self._period)
        return current

    async def find(self, kid: str) -> SigningKey | None:
        """A live key by `kid`; an unknown one reloads from the store, at most every few seconds."""
        found = self._live(kid)
        if found is None and self._file_key is None and self._may_reload():
            await self._reload()
            found = self._live(kid)
        return found

    async def published(self) -> dict[str, Any]:
        """The JWKS: every live key, including those other workers made since the last look."""
        if self._file_key is not None:
            return {"keys": [self._file_key.public()]}
        if self._may_reload():
            await self._reload()
        now = self._clock()
        live = [key for key in self._known.values() if key.expires_at > now]
        return {"keys": [key.public() for key in sorted(live, key=lambda k: -k.not_after)]}

    def _live(self, kid: str) -> SigningKey | None:
        if self._file_key is not None:
            return self._file_key if kid == self._file_key.kid else None
        key = self._known.get(kid)
        return key if key is not None and key.expires_at > self._clock() else None

    def _of_period(self, at: float) -> SigningKey | None:
        end = self._period_start(at) + self._period
        return next((key for key in self._known.values() if key.not_after == end), None)

    async def _ensure(self, at: float) -> SigningKey:
        return self._of_period(at) or await self._make(at)

    def _period_start(self, now: float) -> float:
        return float(int(now // self._period) * self._period)

    async def _make(self, at: float) -> SigningKey:
        """The key of the period containing `at`, made here or, if another worker was first,
        loaded from the store."""
        start = self._period_start(at)
        key = ECKey.generate_key("P-256", private=True)
        made = SigningKey(
            kid=key.thumbprint(),
            alg="ES256",
            key=key,
            not_after=start + self._period,
            expires_at=start + self._period + self._lifetime,
        )
        record = {
            "kid": made.kid,
            "jwk": key.as_dict(private=True),
            "not_after": made.not_after,
            "expires_at": made.expires_at,
        }
        if await self._store.add_record(KIND, f"{int(start):015d}", record, made.expires_at):
            now = self._clock()
            live = {kid: known for kid, known in self._known.items() if known.expires_at > now}
            self._known = {**live, made.kid: made}
            return made
        await self._reload()  # another worker made this period's key first
        theirs = self._of_period(at)
        if theirs is None:
            raise RuntimeError("A period's signing key vanished from the store")
        return theirs

    def _may_reload(self) -> bool:
        return time.monotonic() - self._loaded_at >= RELOAD_SECONDS

    async def _reload(self) -> None:
        self._loaded_at = time.monotonic()
        known: dict[str, SigningKey] = {}
        for record in await self._store.records(KIND):
            key = jwk.import_key(record["jwk"])
            if isinstance(key, ECKey | RSAKey):
                known[record["kid"]] = SigningKey(
                    record["kid"],
                    ALGORITHMS[key.key_type],
                    key,
                    record["not_after"],
                    record["expires_at"],
                )
        self._known = known


def read_key_file(path: Path) -> SigningKey:
    """The configured key: a private JWK (JSON) or a PEM private key, EC P-256 or RSA."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        key: Any = jwk.import_key(json.loads(data))
    else:
        key = _import_pem(data)
    if not isinstance(key, ECKey | RSAKey) or not key.is_private:
        raise ValueError(f"{path}: not a private EC or RSA key")
    if isinstance(key, ECKey) and key.curve_name != "P-256":
        raise ValueError(f"{path}: an EC signing key must be on P-256 (ES256)")
    kid = key.kid or key.thumbprint()
    return SigningKey(kid, ALGORITHMS[key.key_type], key, math.inf, math.inf)


def _import_pem(data: bytes) -> PrivateKey:
    for key_type in ("EC", "RSA"):
        try:
            key = jwk.import_key(data, key_type)
        except (JoseError, ValueError, TypeError):
            continue
        if isinstance(key, ECKey | RSAKey):
            return key
    raise ValueError("Not a PEM EC or RSA private key")
