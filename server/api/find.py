"""`Appointment/$find` over HTTP: its inputs under our names and those of the Argonaut
Scheduling IG and IHE ITI Scheduling, pages linked by `next`, and an OperationOutcome entry
naming what was given but not used to choose the proposals (never dropped silently)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from server.api import paging
from server.api.deps import Rules, StoreDep, strict
from server.api.inputs import inputs_of
from server.api.negotiation import check_accept, fhir_response
from server.fhir import outcome
from server.fhir.bundles import bundle, search_entry
from server.fhir.parameters import Inputs
from server.fhir.values import format_instant, moments, parse_instant, with_plus
from server.scheduling import finding
from server.store.base import Store

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)])
INCLUDES = {
    "Appointment:slot": "slot",
    "Appointment:practitioner": "Practitioner",
    "Appointment:location": "Location",
    "Appointment:actor": "actor",
}
# Taken as the guides define them, but not used to choose the proposals: reported.
NOT_USED = (
    "patient-reference",
    "patient-resource",
    "reason",
    "coverage",
    "referral-identifier",
    "timing",
    "insurance-reference",
)
DEFAULT_DAYS = 7  # the window when `end` is not given


@router.api_route("/Appointment/$find", methods=["GET", "POST"])
async def find(
    request: Request,
    inputs: Annotated[Inputs, inputs_of("appointment-find", ("Slot", "s"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    unused = sorted({*inputs.ignored, *(n for n in NOT_USED if inputs.all(n))})
    if unused and strict(request):
        raise outcome.bad_request(f"$find does not use {', '.join(unused)} to choose proposals")
    query = _query(inputs)
    includes = [_include(value) for value in inputs.all("_include")]
    key: bytes = request.app.state.paging_key
    after, offset = _cursor(inputs, query, key)
    asked = _request(inputs, after)
    found = await finding.find(
        store, rules.policy, rules.own_base, asked, rules.access, rules.limits
    )
    entries = [
        {
            "fullUrl": f"urn:uuid:{_uuid(offer)}",
            "resource": offer.appointment,
            "search": {"mode": "match"},
        }
        for offer in found.offers
    ]
    entries += await _included(store, found.offers, includes, rules.own_base)
    if unused:
        entries.append(_unused_entry(unused))
    links = {
        "self": f"{rules.own_base}/Appointment/$find?{urlencode(query + _cursor_pair(inputs))}"
    }
    total = offset + found.left if found.left is not None else None
    if found.next is not None:
        cursor = paging.sign(key, _encode(found.next, offset + len(found.offers)), query)
        links["next"] = (
            f"{rules.own_base}/Appointment/$find?{urlencode([*query, ('_cursor', cursor)])}"
        )
    else:
        total = offset + len(found.offers)
    if asked.count_all and total is None:
        entries.append(_uncounted_entry(rules.limits.find_slots))
    return fhir_response(200, bundle("searchset", entries, total=total, links=links))


def _request(inputs: Inputs, after: finding.Position | None) -> finding.FindRequest:
    start = _moment(inputs, "start", 0)
    if start is None:
        raise outcome.bad_request("Parameter 'start' is required", "required")
    end = _moment(inputs, "end", 1) or start + timedelta(days=DEFAULT_DAYS)
    return finding.FindRequest(
        start=start,
        end=end,
        service_types=inputs.tokens("service-type") + inputs.tokens("visit-type"),
        specialties=inputs.tokens("specialty"),
        practitioners=_references(inputs, "practitioner"),
        locations=_references(inputs, "location") + _references(inputs, "location-reference"),
        organizations=_references(inputs, "organization"),
        postal_code=inputs.text("address-postalcode"),
        addresses=[str(v) for v in _strings(inputs, "location-string")],
        count=inputs.integer("_count", 50),
        after=after,
        count_all=_total(inputs) == "accurate",
    )


def _total(inputs: Inputs) -> str:
    """`_total`, as for a search: `accurate` counts every proposal of the window."""
    value = inputs.text("_total") or "none"
    if value not in ("none", "estimate", "accurate"):
        raise outcome.bad_request(f"_total is none, estimate or accurate; not {value!r}")
    return value


def _moment(inputs: Inputs, name: str, side: int) -> datetime | None:
    """A dateTime, or a partial date read as its first (`side` 0) or last (1) instant."""
    value = inputs.one(name)
    if value is None:
        return None
    span = moments(with_plus(value) if isinstance(value, str) else value)
    if span is None:
        raise outcome.bad_request(
            f"{name} must be a date or a dateTime, such as 2026-12-01 or 2026-12-01T08:00:00+01:00"
        )
    return span[side]


def _references(inputs: Inputs, name: str) -> list[str]:
    """References given as valueReference, valueUri, valueString or query strings (which may
    list several, comma-separated)."""
    found: list[str] = []
    for value in inputs.all(name):
        reference = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(reference, str) or not reference:
            raise outcome.bad_request(f"{name} takes references such as Practitioner/123")
        found += [part for part in reference.split(",") if part]
    return found


def _strings(inputs: Inputs, name: str) -> list[str]:
    values = inputs.all(name)
    if not all(isinstance(v, str) and v for v in values):
        raise outcome.bad_request(f"{name} takes strings")
    return values


def _query(inputs: Inputs) -> list[tuple[str, str]]:
    """The inputs as a query string, for the `self` and `next` links (a POST's included)."""
    pairs: list[tuple[str, str]] = []
    for name, values in sorted(inputs.values.items()):
        if name in NOT_USED or name == "_cursor":
            continue
        for value in values:
            pairs.append((name, _as_text(value)))
    return pairs


def _as_text(value: Any) -> str:
    if isinstance(value, dict) and "reference" in value:
        return str(value["reference"])
    if isinstance(value, dict) and value.get("code"):
        system = value.get("system")
        return f"{system}|{value['code']}" if system else str(value["code"])
    return str(value)


def _cursor(
    inputs: Inputs, query: list[tuple[str, str]], key: bytes
) -> tuple[finding.Position | None, int]:
    """The position a `next` link carries (signed for this search, `paging`), and how many
    proposals came before it."""
    text = inputs.text("_cursor")
    if text is None:
        return None, 0
    raw = paging.verify(key, text, query)
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode() + b"=="))
        start = parse_instant(data["at"])
        passed = frozenset(str(p) for p in data["passed"])
        offered = {str(k): max(int(v), 0) for k, v in data.get("offered", {}).items()}
        offset = int(data["offset"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise outcome.bad_request("_cursor is not one this server gave") from None
    if start is None or offset < 0:
        raise outcome.bad_request("_cursor is not one this server gave")
    return finding.Position(start, passed, offered), offset


def _cursor_pair(inputs: Inputs) -> list[tuple[str, str]]:
    text = inputs.text("_cursor")
    return [("_cursor", text)] if text else []


def _encode(position: finding.Position, offset: int) -> str:
    data = {
        "at": format_instant(position.start),
        "passed": sorted(position.passed),
        "offered": position.offered,
        "offset": offset,
    }
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _uuid(offer: finding.Offer) -> str:
    """A fullUrl that names the proposal as long as its slot stays as it is."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{offer.slot.id}/{offer.slot.version}"))


def _unused_entry(names: list[str]) -> dict[str, Any]:
    issue = outcome.Issue(
        "not-supported",
        f"Not used to choose these proposals: {', '.join(names)}",
        severity="warning",
    )
    return {"resource": outcome.operation_outcome([issue]), "search": {"mode": "outcome"}}


def _uncounted_entry(most: int) -> dict[str, Any]:
    issue = outcome.Issue(
        "too-costly",
        f"No total: the window holds more than the {most} slots one $find reads (limit "
        "find_slots); narrow it",
        severity="warning",
    )
    return {"resource": outcome.operation_outcome([issue]), "search": {"mode": "outcome"}}


def _include(value: Any) -> str:
    if not isinstance(value, str) or value not in INCLUDES:
        raise outcome.bad_request(f"$find includes {', '.join(sorted(INCLUDES))}; not {value!r}")
    return INCLUDES[str(value)]


async def _included(
    store: Store, offers: list[finding.Offer], includes: list[str], own_base: str
) -> list[dict[str, Any]]:
    wanted: dict[tuple[str, str], None] = {}
    for offer in offers:
        if "slot" in includes:
            wanted[("Slot", offer.slot.id)] = None
        for actor in (offer.schedule.body or {}).get("actor", []):
            kind, _, actor_id = str(actor.get("reference", "")).partition("/")
            if actor_id and (kind in includes or "actor" in includes):
                wanted[(kind, actor_id)] = None
    found = await store.current_many(list(wanted))
    return [search_entry(v.body or {}, own_base, "include") for v in found]
