"""What a write stores: the next version, its meta, its index values, its checked references.

Every create, update and delete of every path (REST, Bundles, scheduling operations) goes through
these functions inside a store Transaction, so version numbering, `If-Match` and reference checks
have exactly one implementation.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from server.fhir import outcome
from server.fhir.indexing import IndexValues, extract
from server.fhir.values import now_instant, split_reference
from server.store.base import Transaction, Version

# References that must point at an existing resource of this server, of the type given, for the
# resource to be valid.
MUST_RESOLVE: dict[str, dict[str, str]] = {
    "Slot": {"schedule": "Schedule"},
    "Appointment": {"slot": "Slot"},
}


class WriteRules(Protocol):
    """The domain's say on every write, whatever path it came by (REST, Bundle, operation).

    `before` sees the previous live body (None on create) and the next one (None on delete) and
    returns the body to store, or raises a FhirError; `after` runs once the version is stored,
    for what must follow from it (a Slot's status, Slots from a Schedule's availability)."""

    async def before(
        self, tx: Transaction, previous: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> dict[str, Any] | None: ...

    async def after(
        self, tx: Transaction, previous: dict[str, Any] | None, version: Version
    ) -> None: ...


def new_id() -> str:
    return str(uuid.uuid4())


async def create(
    tx: Transaction,
    resource: dict[str, Any],
    *,
    own_base: str,
    rules: WriteRules,
    resource_id: str | None = None,
) -> Version:
    """Store a new resource under a server id (or `resource_id` for update-as-create)."""
    if resource_id is None:  # a fresh UUID: nothing to look up, the store's unique key stands
        return await _write(tx, resource, new_id(), None, own_base, rules, method="POST")
    previous = await tx.current(resource["resourceType"], resource_id)
    if previous is not None and not previous.deleted:
        raise outcome.conflict(f"{resource['resourceType']}/{resource_id} already exists")
    return await _write(tx, resource, resource_id, previous, own_base, rules, method="POST")


async def create_many(
    tx: Transaction, resources: list[dict[str, Any]], *, own_base: str, rules: WriteRules
) -> list[Version]:
    """Store new resources under fresh server ids, in one trip to the store where it can."""
    prepared = [
        await _prepare(tx, resource, new_id(), None, own_base, rules, "POST")
        for resource in resources
    ]
    await tx.put_new(prepared)
    for version, _ in prepared:
        await rules.after(tx, None, version)
    return [version for version, _ in prepared]


async def update(
    tx: Transaction,
    resource: dict[str, Any],
    resource_id: str,
    *,
    own_base: str,
    rules: WriteRules,
    if_match: int | None = None,
) -> tuple[Version, bool]:
    """Store a new version; creates the resource if it does not exist. True if it was created."""
    previous = await tx.current(resource["resourceType"], resource_id)
    check_if_match(previous, if_match)
    created = previous is None or previous.deleted
    version = await _write(
        tx, resource, resource_id, previous, own_base, rules, method="POST" if created else "PUT"
    )
    return version, created


async def delete(
    tx: Transaction,
    resource_type: str,
    resource_id: str,
    *,
    rules: WriteRules,
    if_match: int | None = None,
) -> Version | None:
    """Record a deletion; None if there was nothing live to delete."""
    previous = await tx.current(resource_type, resource_id)
    check_if_match(previous, if_match)
    if previous is None or previous.deleted:
        return None
    await rules.before(tx, previous.body, None)
    tombstone = Version(
        resource_type, resource_id, previous.version + 1, now_instant(), None, method="DELETE"
    )
    await tx.put(tombstone, None, previous)
    await rules.after(tx, previous.body, tombstone)
    return tombstone


ANY_VERSION = 0  # `If-Match: *`: whichever version is current, so long as one is


def check_if_match(current: Version | None, if_match: int | None) -> None:
    if if_match is None:
        return
    if (
        current is None
        or current.deleted
        or (if_match != ANY_VERSION and current.version != if_match)
    ):
        found = "none" if current is None or current.deleted else current.version
        raise outcome.precondition_failed(
            f"If-Match expects version {if_match or 'any'}, the current version is {found}"
        )


async def _write(
    tx: Transaction,
    resource: dict[str, Any],
    resource_id: str,
    previous: Version | None,
    own_base: str,
    rules: WriteRules,
    method: str,
) -> Version:
    version, index = await _prepare(tx, resource, resource_id, previous, own_base, rules, method)
    await tx.put(version, index, previous)
    live = previous.body if previous is not None and not previous.deleted else None
    await rules.after(tx, live, version)
    return version


async def _prepare(
    tx: Transaction,
    resource: dict[str, Any],
    resource_id: str,
    previous: Version | None,
    own_base: str,
    rules: WriteRules,
    method: str,
) -> tuple[Version, IndexValues]:
    """The next version as the rules let it be stored, and its index values."""
    number = previous.version + 1 if previous else 1
    last_updated = now_instant()
    body = dict(resource, id=resource_id)
    meta = {
        key: value
        for key, value in body.get("meta", {}).items()
        if key not in ("versionId", "lastUpdated")
    }
    body["meta"] = {"versionId": str(number), "lastUpdated": last_updated, **meta}
    await check_references(tx, body, own_base)
    live = previous.body if previous is not None and not previous.deleted else None
    body = await rules.before(tx, live, body) or body
    version = Version(body["resourceType"], resource_id, number, last_updated, body, method)
    return version, extract(body, own_base)


async def check_references(tx: Transaction, body: dict[str, Any], own_base: str) -> None:
    """Each MUST_RESOLVE element is a literal reference to a live resource of this server (not a
    display, an identifier, a contained or a remote resource)."""
    resource_type = body["resourceType"]
    for element, expected in MUST_RESOLVE.get(resource_type, {}).items():
        values = body.get(element, [])
        for value in values if isinstance(values, list) else [values]:
            literal = value.get("reference") if isinstance(value, dict) else None
            target_type, target_id = (
                split_reference(literal, own_base) if isinstance(literal, str) else (None, None)
            )
            target = (
                await tx.current(expected, target_id)
                if target_type == expected and target_id
                else None
            )
            if target is None or target.deleted:
                raise outcome.invalid_one(
                    f"{resource_type}.{element} must refer to a {expected} of this server; "
                    f"{literal or 'no literal reference'!r} does not",
                    f"{resource_type}.{element}",
                )
