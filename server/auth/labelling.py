"""The access labels each write gets (see `labels`), derived from what the resource refers to.

Run for every write of every path by the scheduling rules, so that a Slot generated from an
availability rule is labelled exactly like one a client posts.
"""

from __future__ import annotations

from typing import Any

from server.auth import audiences, labels, owners, remote
from server.store import writes
from server.store.base import Reader, Transaction, Version

Body = dict[str, Any]
PUBLIC = frozenset({audiences.PUBLIC})


async def label(
    reader: Reader, previous: Body | None, body: Body, creator: str, own_base: str
) -> Body:
    """`body` with the owner and client labels its type calls for; types that are no one's
    (the directory: Practitioner, Organization, Location, ...) carry none."""
    kind = body.get("resourceType")
    if remote.is_remote(body) and kind in ("Schedule", "Slot"):  # the publisher's, for all
        return labels.with_labels(body, frozenset({remote.PUBLISHER}), frozenset(), PUBLIC)
    found = await _derive(reader, kind, previous, body, creator, own_base)
    if found is None:
        return labels.with_labels(body, frozenset(), frozenset())
    published_for = audiences.of_slot(body) if kind == "Slot" else frozenset()
    return labels.with_labels(body, *found, published_for)


async def _derive(
    reader: Reader, kind: Any, previous: Body | None, body: Body, creator: str, own_base: str
) -> tuple[frozenset[str], frozenset[str]] | None:
    ref = owners.local
    none: frozenset[str] = frozenset()
    mine = labels.clients(previous) if previous is not None else frozenset({creator})
    if kind == "Schedule":
        return await owners.of_schedule(reader, body, own_base), none
    if kind == "Slot":
        return (await owners.labelled(reader, [ref(body.get("schedule"), own_base)]))[0], none
    if kind == "Appointment":
        return await _appointment_owners(reader, previous, body, own_base), mine
    if kind == "Patient":
        return labels.owners(previous), mine
    if kind in ("Communication", "AppointmentResponse"):
        about = [*body.get("about", []), *body.get("basedOn", [])]
        if kind == "AppointmentResponse":
            about = [body.get("appointment")]
        return await owners.labelled(reader, [ref(a, own_base) for a in about])
    if kind in ("SupplyDelivery", "Immunization"):
        return await owners.of_actor(reader, _place(body, own_base), own_base), none
    if kind == "AuditEvent":
        what = [ref(e.get("what"), own_base) for e in body.get("entity", [])]
        return (await owners.labelled(reader, what))[0], none
    if kind == "Provenance":
        targets = [ref(t, own_base) for t in body.get("target", [])]
        return (await owners.labelled(reader, targets))[0], none
    if kind == "Basic":
        subject = ref(body.get("subject"), own_base)
        return (frozenset({subject}) if subject else none), none
    return None


async def _appointment_owners(
    reader: Reader, previous: Body | None, body: Body, own_base: str
) -> frozenset[str]:
    slot_refs = [owners.local(s, own_base) for s in body.get("slot", [])]
    if any(slot_refs):
        return (await owners.labelled(reader, slot_refs))[0]
    found: set[str] = set()
    for participant in body.get("participant", []):
        actor = owners.local(participant.get("actor"), own_base)
        if actor and not actor.startswith("Patient/"):
            found |= await owners.of_actor(reader, actor, own_base)
    return frozenset(found) or labels.owners(previous)


def _place(body: Body, own_base: str) -> str | None:
    """Where doses are counted: a delivery's destination or receiver, an Immunization's
    location or performer."""
    if body.get("resourceType") == "SupplyDelivery":
        receivers = body.get("receiver", [])
        return owners.local(body.get("destination"), own_base) or (
            owners.local(receivers[0], own_base) if receivers else None
        )
    performers = body.get("performer", [])
    return owners.local(body.get("location"), own_base) or (
        owners.local(performers[0].get("actor"), own_base) if performers else None
    )


class _AsGiven:
    """Writes the body as given: the labels were just computed here."""

    async def before(self, tx: Transaction, previous: Body | None, body: Body | None) -> Any:
        return body

    async def after(self, tx: Transaction, previous: Body | None, version: Version) -> None:
        return None


async def spread_to_patients(tx: Transaction, appointment: Version, own_base: str) -> None:
    """The patients of an appointment become readable by whoever may read the appointment:
    the app that booked it and the schedule's owners."""
    body = appointment.body or {}
    owner_refs, client_ids = labels.owners(body), labels.clients(body)
    for participant in body.get("participant", []):
        actor = owners.local(participant.get("actor"), own_base)
        if not (actor and actor.startswith("Patient/")):
            continue
        current = await tx.current("Patient", actor.split("/")[1])
        if current is None or current.body is None:
            continue
        known_owners, known_clients = labels.owners(current.body), labels.clients(current.body)
        if owner_refs <= known_owners and client_ids <= known_clients:
            continue
        merged = labels.with_labels(
            current.body, known_owners | owner_refs, known_clients | client_ids
        )
        await writes.update(tx, merged, current.id, own_base=own_base, rules=_AsGiven())
