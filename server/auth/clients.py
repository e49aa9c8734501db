"""OAuth2 client registrations, kept as store records of kind "client".

A client is a booking app, an owner's own agenda software (`owners`: the Organizations and
Practitioners it acts for), or the operator's tool (`admin`). It gets tokens with a secret
(client_secret_basic or client_secret_post) or with a signed assertion (private_key_jwt),
checked against its registered `jwks` or the key set at its `jwks_url`. A client with none of
them gets tokens only from the operator (`creneau token`), never at the token endpoint.

A secret is 32 random bytes, shown once at creation or rotation. Only a salted scrypt hash is
kept; a presented secret is hashed the same way and compared in constant time
(`hmac.compare_digest`), so neither the store nor the timing of a refusal reveals it. The scrypt
cost is modest (a few ms) on purpose: a 256-bit random secret cannot be guessed whatever the cost,
so the hash is there to keep a copied store from holding working secrets, not to slow guessing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from authlib.common.security import is_secure_transport
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from server.auth.scopes import Scopes, parse_one
from server.fhir import outcome
from server.store.base import Store

KIND = "client"
BOOKING_SCOPE = "system/*.rs system/Appointment.cruds system/Patient.cruds"
ADMIN_SCOPE = "system/*.cruds"
OWNER = re.compile(r"^(Organization|Practitioner)/[A-Za-z0-9\-.]{1,64}$")
SCRYPT = {"n": 2**11, "r": 8, "p": 1}  # 2 MiB, a few ms: see the module docstring


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    owners: tuple[str, ...] = ()
    admin: bool = False
    scope: str = BOOKING_SCOPE
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    disabled: bool = False
    created: str = ""

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "owners": list(self.owners)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Client:
        return cls(**{**record, "owners": tuple(record.get("owners", ()))})

    def public(self) -> dict[str, Any]:
        """What the admin API and the CLI show: everything but the secret's hash."""
        shown = self.to_record()
        shown["has_secret"] = shown.pop("secret_hash") is not None
        return shown

    def check_secret(self, secret: str) -> bool:
        return self.secret_hash is not None and _verify(self.secret_hash, secret)


async def create(
    store: Store,
    *,
    name: str,
    owners: list[str] | tuple[str, ...] = (),
    admin: bool = False,
    scope: str | None = None,
    secret: bool = False,
    jwks: dict[str, Any] | None = None,
    jwks_url: str | None = None,
) -> tuple[Client, str | None]:
    """Register a client; the plain secret (when `secret`) is returned once, never stored."""
    _check_credentials(secret, jwks, jwks_url)
    plain = secrets.token_urlsafe(32) if secret else None
    client = Client(
        client_id=new_client_id(),
        name=_checked_name(name),
        owners=tuple(_checked_owner(owner) for owner in owners),
        admin=admin,
        scope=_checked_scope(scope or (ADMIN_SCOPE if admin else BOOKING_SCOPE)),
        secret_hash=_hash(plain) if plain else None,
        jwks=jwks,
        jwks_url=jwks_url,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    await store.put_record(KIND, client.client_id, client.to_record())
    return client, plain


async def get(store: Store, client_id: str) -> Client | None:
    record = await store.record(KIND, client_id)
    return Client.from_record(record) if record else None


async def get_or_raise(store: Store, client_id: str) -> Client:
    client = await get(store, client_id)
    if client is None:
        raise outcome.not_found(f"No client {client_id}")
    return client


async def list_all(store: Store) -> list[Client]:
    return [Client.from_record(record) for record in await store.records(KIND)]


async def disable(store: Store, client_id: str) -> Client:
    """Refuse the client new tokens from now on. Tokens already issued live out their (short)
    lifetime: verifying them reads no store."""
    client = replace(await get_or_raise(store, client_id), disabled=True)
    await store.put_record(KIND, client_id, client.to_record())
    return client


async def rotate_secret(store: Store, client_id: str) -> tuple[Client, str]:
    """A new secret replaces the old one at once (the old one stops working)."""
    plain = secrets.token_urlsafe(32)
    client = replace(await get_or_raise(store, client_id), secret_hash=_hash(plain))
    await store.put_record(KIND, client_id, client.to_record())
    return client, plain


def _hash(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${_b64(salt)}${_b64(digest)}"


def _verify(stored: str, secret: str) -> bool:
    scheme, salt, digest = stored.split("$")
    if scheme != "scrypt":
        return False
    presented = hashlib.scrypt(secret.encode(), salt=_unb64(salt), dklen=32, **SCRYPT)
    return hmac.compare_digest(presented, _unb64(digest))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


def _checked_name(name: str) -> str:
    if not name.strip() or len(name) > 200:
        raise outcome.bad_request("A client needs a name (at most 200 characters)")
    return name.strip()


def _checked_owner(owner: str) -> str:
    if not OWNER.match(owner):
        raise outcome.bad_request(f"An owner is Organization/ID or Practitioner/ID, not {owner!r}")
    return owner


def _checked_scope(scope: str) -> str:
    unknown = [part for part in scope.split() if parse_one(part) is None]
    if unknown or not scope.split():
        raise outcome.bad_request(f"Not grantable system/ scopes: {' '.join(unknown) or '(none)'}")
    return Scopes.parse(scope).text()


def _check_credentials(secret: bool, jwks: dict[str, Any] | None, jwks_url: str | None) -> None:
    if jwks is not None and jwks_url is not None:
        raise outcome.bad_request("Give a JWKS or a JWKS URL, not both")
    if jwks_url and not is_secure_transport(jwks_url):
        raise outcome.bad_request("A JWKS URL must be https")
    if jwks is not None:
        _check_jwks(jwks)


def _check_jwks(jwks: dict[str, Any]) -> None:
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise outcome.bad_request('A JWKS is {"keys": [...]} with at least one public key')
    if any(not isinstance(key, dict) or "d" in key or "k" in key for key in keys):
        raise outcome.bad_request("A JWKS holds public keys only (RSA or EC)")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as error:
        raise outcome.bad_request(f"Unreadable JWKS: {error}") from None


def new_client_id() -> str:
    """16 random bytes, URL-safe; never starting with `-`, which a command line would take for
    an option (`creneau clients disable <id>`)."""
    while (client_id := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return client_id
