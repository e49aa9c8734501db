"""Access labels: who a resource belongs to, kept in its `meta.security`.

Two code systems of ours: `owner` (an Organization or Practitioner, as `Type/id`, whose schedule
the resource belongs to) and `client` (the app that booked or created it). The server computes
them on every write and replaces whatever a client sent under these systems, so a client cannot
forge access. Stored in the resource, they are indexed by the standard `_security` search
parameter: that is how a search is filtered in the store query itself, on both stores. A Slot
also carries `owner-audience` labels: whom each owner published it for (see `audiences`).

They are the server's own bookkeeping and are not shown in answers (`server.api.shown`).
"""

from __future__ import annotations

from typing import Any

from server.auth import audiences
from server.fhir.search import Match, TokenValue

OWNER = "https://fhir.creneau.org/CodeSystem/owner"
CLIENT = "https://fhir.creneau.org/CodeSystem/client"
OURS = frozenset({OWNER, CLIENT, audiences.LABEL})
NOBODY = "-"  # an owner code no resource carries: a filter that matches nothing

Body = dict[str, Any]


def of(body: Body | None, system: str) -> frozenset[str]:
    security = (body or {}).get("meta", {}).get("security", [])
    return frozenset(
        str(c.get("code")) for c in security if isinstance(c, dict) and c.get("system") == system
    )


def owners(body: Body | None) -> frozenset[str]:
    return of(body, OWNER)


def clients(body: Body | None) -> frozenset[str]:
    return of(body, CLIENT)


def owner_audiences(body: Body | None) -> frozenset[str]:
    return of(body, audiences.LABEL)


def with_labels(
    body: Body,
    owner_refs: frozenset[str],
    client_ids: frozenset[str],
    published_for: frozenset[str] = frozenset(),
) -> Body:
    """The body with exactly these access labels (and the client's other labels kept);
    `published_for`, a Slot's audiences, labelled per owner."""
    meta = dict(body.get("meta", {}))
    kept = [c for c in meta.get("security", []) if c.get("system") not in OURS]
    ours = [{"system": OWNER, "code": o} for o in sorted(owner_refs)]
    ours += [{"system": CLIENT, "code": c} for c in sorted(client_ids)]
    codes = audiences.label_codes(owner_refs, published_for)
    ours += [{"system": audiences.LABEL, "code": c} for c in codes]
    if kept or ours:
        meta["security"] = kept + ours
    else:
        meta.pop("security", None)
    return {**body, "meta": meta}


def match(
    owner_refs: frozenset[str],
    client_ids: frozenset[str] = frozenset(),
    audience_codes: tuple[str, ...] = (),
) -> Match:
    """A search condition: labelled with any of these owners, clients or owner audiences."""
    values = [TokenValue(OWNER, o) for o in sorted(owner_refs)]
    values += [TokenValue(CLIENT, c) for c in sorted(client_ids)]
    values += [TokenValue(audiences.LABEL, c) for c in audience_codes]
    return Match("_security", "token", None, tuple(values or [TokenValue(OWNER, NOBODY)]))
