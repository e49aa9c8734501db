"""Owner grants over HTTP: `$grant`, `$revoke` and `$grants` on an Organization or a
Practitioner. Only the owner's own clients and admin clients may call them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from server.api.deps import Rules, StoreDep
from server.api.inputs import inputs_of
from server.api.negotiation import check_accept, fhir_response
from server.api.replies import version_reply
from server.auth import clients, grants
from server.auth.access import Access, forbidden
from server.fhir import outcome
from server.fhir.bundles import bundle, collection_entry
from server.fhir.parameters import Inputs
from server.fhir.values import format_instant
from server.scheduling.retry import atomically
from server.store import writes
from server.store.base import Transaction, Version

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)])
OWNER_TYPES = ("Organization", "Practitioner")


@router.post("/Organization/{owner_id}/$grant")
@router.post("/Practitioner/{owner_id}/$grant")
async def grant(
    request: Request,
    owner_id: str,
    inputs: Annotated[Inputs, inputs_of("grant", ("Basic", "c"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    owner = _owner(rules.access, request, owner_id)
    given = _grant_of(inputs, owner)
    grants.check(given)
    if given.client != grants.EVERYONE and await clients.get(store, given.client) is None:
        raise outcome.not_found(f"No client {given.client!r}")
    created = format_instant(rules.policy.now())

    async def work(tx: Transaction) -> tuple[Version, bool]:
        existing = await grants.current(tx, owner, given.client)
        body = given.to_basic(created)
        if existing is None:
            return await writes.create(tx, body, own_base=rules.own_base, rules=rules), True
        version, _ = await writes.update(
            tx, {**body, "id": existing.id}, existing.id, own_base=rules.own_base, rules=rules
        )
        return version, False

    version, was_created = await atomically(store, work, rules.trail)
    reply = version_reply(201 if was_created else 200, version, rules.own_base, location=True)
    return fhir_response(reply.status, reply.body, reply.headers)


@router.post("/Organization/{owner_id}/$revoke")
@router.post("/Practitioner/{owner_id}/$revoke")
async def revoke(
    request: Request,
    owner_id: str,
    inputs: Annotated[Inputs, inputs_of("revoke", ("Basic", "d"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    owner = _owner(rules.access, request, owner_id)
    client = inputs.text("client", required=True) or ""

    async def work(tx: Transaction) -> bool:
        existing = await grants.current(tx, owner, client)
        if existing is None:
            return False
        await writes.delete(tx, "Basic", existing.id, rules=rules)
        return True

    done = await atomically(store, work, rules.trail)
    message = (
        f"Grant of {owner} to {client} revoked" if done else f"{owner} had no grant to {client}"
    )
    issue = outcome.Issue("informational", message, severity="information")
    return fhir_response(200, outcome.operation_outcome([issue]))


@router.api_route("/Organization/{owner_id}/$grants", methods=["GET", "POST"])
@router.api_route("/Practitioner/{owner_id}/$grants", methods=["GET", "POST"])
async def listed(
    request: Request,
    owner_id: str,
    inputs: Annotated[Inputs, inputs_of("grants", ("Basic", "r"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    owner = _owner(rules.access, request, owner_id)
    found = await grants.listed(store, owner)
    entries = [collection_entry(v.body or {}, rules.own_base) for v in found]
    return fhir_response(200, bundle("collection", entries))


def _owner(access: Access, request: Request, owner_id: str) -> str:
    """`Type/id` of the owner in the URL (found by `inputs_of`): the caller must be its client."""
    kind = request.url.path.split("/")[-3]
    owner = f"{kind}/{owner_id}"
    if not (access.admin or owner in access.caller.owners):
        raise forbidden(f"Only {owner}'s own clients and admin clients manage its grants")
    return owner


def _grant_of(inputs: Inputs, owner: str) -> grants.Grant:
    period: Any = inputs.one("period")
    if period is not None and not isinstance(period, dict):
        raise outcome.bad_request("period is a Period (valuePeriod)")
    quota = inputs.one("quota")
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int)):
        quota = _integer(quota)
    return grants.Grant(
        owner=owner,
        client=inputs.text("client", required=True) or "",
        access=frozenset(str(a) for a in inputs.all("access")),
        audience=frozenset(str(a) for a in inputs.all("audience")),
        quota=quota,
        start=grants.bound((period or {}).get("start"), 0),
        end=grants.bound((period or {}).get("end"), 1),
    )


def _integer(value: Any) -> int:
    if isinstance(value, str) and value.isdecimal() and len(value) < 10:
        return int(value)
    raise outcome.bad_request("quota is a whole number of bookings a day")
