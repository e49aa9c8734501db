"""Owner grants: which app may discover, book into or manage an owner's schedules.

A grant is stored as a FHIR `Basic` resource (code `client-grant`): `subject` is the owner
(Organization or Practitioner), `identifier` names the client (`*` for every client), and the
`client-grant` extension holds the access codes, the audiences the client acts for (see
`audiences`), the daily quota and the period. Basic, because
R4B has no resource for an owner's permission to an app (R5 Permission is one; R4B Consent
requires a patient). Revoking deletes the grant: its history keeps what it was.

Every grant change adds to the `grants|epoch` tally in the same transaction; each worker keeps
the grants it read until the epoch moves, so a revoke takes effect at the next request on every
worker, and a request pays one tally read, not a grant search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.auth import audiences
from server.fhir import outcome
from server.fhir.search import Match, ReferenceValue, TokenValue
from server.fhir.values import date_range
from server.store.base import Query, Reader, Store, Transaction, Version

CANONICAL = "https://fhir.creneau.org"
GRANT = f"{CANONICAL}/StructureDefinition/client-grant"
GRANT_CODE = {"system": f"{CANONICAL}/CodeSystem/resource-kind", "code": "client-grant"}
CLIENT_SYSTEM = f"{CANONICAL}/client"
ACCESS = ("discover", "book", "manage")
EVERYONE = "*"
EPOCH = "grants|epoch"
GRANT_LIMIT = 20_000


@dataclass(frozen=True)
class Grant:
    owner: str  # Organization/ID or Practitioner/ID
    client: str  # a client_id, or "*"
    access: frozenset[str]
    quota: int | None = None
    start: str | None = None  # instants, inclusive
    end: str | None = None
    audience: frozenset[str] = frozenset()  # besides the public: PRO, SNP, CPTS

    def live(self, now: str) -> bool:
        return (self.start is None or self.start <= now) and (self.end is None or now < self.end)

    def to_basic(self, created: str) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [
            {"url": "access", "valueCode": a} for a in sorted(self.access)
        ]
        parts += [{"url": "audience", "valueCode": a} for a in sorted(self.audience)]
        if self.quota is not None:
            parts.append({"url": "quota", "valueInteger": self.quota})
        if self.start or self.end:
            period = {k: v for k, v in (("start", self.start), ("end", self.end)) if v}
            parts.append({"url": "period", "valuePeriod": period})
        return {
            "resourceType": "Basic",
            "identifier": [{"system": CLIENT_SYSTEM, "value": self.client}],
            "code": {"coding": [GRANT_CODE]},
            "subject": {"reference": self.owner},
            "author": {"reference": self.owner},
            "created": created[:10],
            "extension": [{"url": GRANT, "extension": parts}],
        }


def from_basic(body: dict[str, Any]) -> Grant | None:
    codes = body.get("code", {}).get("coding", [])
    if not any(c.get("code") == GRANT_CODE["code"] for c in codes):
        return None
    client = next(
        (i.get("value") for i in body.get("identifier", []) if i.get("system") == CLIENT_SYSTEM),
        None,
    )
    extension: dict[str, Any] = next(
        (e for e in body.get("extension", []) if e.get("url") == GRANT), {}
    )
    parts: list[dict[str, Any]] = extension.get("extension", [])
    given = next((p.get("valuePeriod") for p in parts if p.get("url") == "period"), None)
    period: dict[str, Any] = given if isinstance(given, dict) else {}
    quota = next((p.get("valueInteger") for p in parts if p.get("url") == "quota"), None)
    owner = body.get("subject", {}).get("reference")
    if not client or not owner:
        return None
    return Grant(
        owner=owner,
        client=client,
        access=frozenset(p["valueCode"] for p in parts if p.get("url") == "access"),
        audience=frozenset(p["valueCode"] for p in parts if p.get("url") == "audience"),
        quota=quota,
        start=bound(period.get("start"), 0),
        end=bound(period.get("end"), 1),
    )


def bound(value: Any, side: int) -> str | None:
    span = date_range(value) if isinstance(value, str) else None
    return span[side] if span else None


IS_GRANT = Match("code", "token", None, (TokenValue(GRANT_CODE["system"], GRANT_CODE["code"]),))


def _client_match(*clients: str) -> list[Match]:
    values = tuple(TokenValue(CLIENT_SYSTEM, c) for c in clients)
    return [Match("identifier", "token", None, values), IS_GRANT]


async def _grants_of(reader: Reader, *clients: str) -> list[Grant]:
    found = await reader.find(Query("Basic", _client_match(*clients), count=GRANT_LIMIT))
    return [g for v in found.versions if (g := from_basic(v.body or {})) is not None]


class GrantBook:
    """The grants each worker reads, kept until another change of grants (the epoch)."""

    def __init__(self) -> None:
        self._epoch: int | None = None
        self._public: list[Grant] = []
        self._by_client: dict[str, list[Grant]] = {}

    async def of(self, store: Store, client_id: str) -> list[Grant]:
        """The grants to this client and to everyone."""
        epoch = (await store.tallies(EPOCH)).get(EPOCH, 0)
        if epoch != self._epoch:
            self._epoch, self._by_client = epoch, {}
            self._public = await _grants_of(store, EVERYONE)
        if client_id not in self._by_client:
            if len(self._by_client) > 10_000:
                self._by_client.clear()
            self._by_client[client_id] = await _grants_of(store, client_id)
        return self._by_client[client_id] + self._public


async def current(tx: Transaction, owner: str, client: str) -> Version | None:
    matches = [*_client_match(client), Match("subject", "reference", None, (_ref(owner),))]
    found = await tx.find(Query("Basic", matches, count=2))
    return found.versions[0] if found.versions else None


async def listed(reader: Reader, owner: str) -> list[Version]:
    matches = [IS_GRANT, Match("subject", "reference", None, (_ref(owner),))]
    return (await reader.find(Query("Basic", matches, count=GRANT_LIMIT))).versions


def _ref(owner: str) -> ReferenceValue:
    kind, _, ident = owner.partition("/")
    return ReferenceValue(kind, ident, owner)


async def note_change(
    tx: Transaction, previous: dict[str, Any] | None, body: dict[str, Any] | None
) -> None:
    """Any write of a grant, whatever its path, moves the epoch: every worker reloads."""
    if any(b is not None and from_basic(b) is not None for b in (previous, body)):
        await tx.tally(EPOCH, 1)


def check(grant: Grant) -> None:
    """What a grant may say: known access codes, never `book` or `manage` for everyone."""
    unknown = grant.access - set(ACCESS)
    if not grant.access or unknown:
        raise outcome.bad_request(f"access is one or more of {', '.join(ACCESS)}")
    if grant.client == EVERYONE and grant.access != {"discover"}:
        raise outcome.bad_request("Only discover may be granted to every client (*)")
    if not grant.audience <= audiences.CODES - {audiences.PUBLIC}:
        raise outcome.bad_request("audience is one or more of PRO, SNP, CPTS (apps act for PUBLIC)")
    if grant.client == EVERYONE and grant.audience:
        raise outcome.bad_request("An audience is granted to one client, not to every client")
    if grant.quota is not None and grant.quota < 0:
        raise outcome.bad_request("quota is a number of bookings per day, 0 or more")
    if grant.start and grant.end and grant.end <= grant.start:
        raise outcome.bad_request("period must end after it starts")
