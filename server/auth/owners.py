"""Who owns what: the Organizations and Practitioners that decide for a resource.

A Schedule's owners come from its actors: a Practitioner owns its own agenda (independent
practice); a PractitionerRole gives its organization and its practitioner (a practitioner in a
hospital: either decides); a Location its managingOrganization; a HealthcareService its
providedBy. An Organization's parents (`partOf`, a few levels up) own what it owns, so a hospital
group decides for its hospitals. Slots, Appointments and Communications carry the owners of the
Schedule they come from, read from its labels; a vaccine delivery or an Immunization belongs to
the owners of its place.
"""

from __future__ import annotations

from typing import Any

from server.auth import labels
from server.fhir.values import split_reference
from server.store.base import Reader

PARENT_DEPTH = 4
Body = dict[str, Any]


def local(reference: Any, own_base: str) -> str | None:
    """`Type/id` of a literal reference to this server, else None."""
    literal = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(literal, str):
        return None
    kind, ident = split_reference(literal, own_base)
    return f"{kind}/{ident}" if kind and ident else None


async def of_actor(reader: Reader, actor: str | None, own_base: str) -> frozenset[str]:
    """The owners an actor (or a place) stands for."""
    if actor is None:
        return frozenset()
    kind, _, ident = actor.partition("/")
    if kind in ("Practitioner", "Organization"):
        found = {actor}
        if kind == "Organization":
            found |= await _parents(reader, ident, own_base)
        return frozenset(found)
    fields = {
        "PractitionerRole": ("organization", "practitioner"),
        "Location": ("managingOrganization",),
        "HealthcareService": ("providedBy",),
    }.get(kind)
    if fields is None:
        return frozenset()
    current = await reader.current(kind, ident)
    body = current.body if current is not None else None
    if body is None:
        return frozenset()
    found = set()
    for name in fields:
        reference = local(body.get(name), own_base)
        if reference and reference.split("/")[0] in ("Organization", "Practitioner"):
            found |= await of_actor(reader, reference, own_base)
    return frozenset(found)


async def _parents(reader: Reader, organization_id: str, own_base: str) -> set[str]:
    found: set[str] = set()
    current_id = organization_id
    for _ in range(PARENT_DEPTH):
        current = await reader.current("Organization", current_id)
        parent = local((current.body or {}).get("partOf"), own_base) if current else None
        if parent is None or parent in found or not parent.startswith("Organization/"):
            break
        found.add(parent)
        current_id = parent.split("/")[1]
    return found


async def of_schedule(reader: Reader, body: Body, own_base: str) -> frozenset[str]:
    found: set[str] = set()
    for actor in body.get("actor", []):
        found |= await of_actor(reader, local(actor, own_base), own_base)
    return frozenset(found)


async def of_directory(reader: Reader, body: Body, own_base: str) -> frozenset[str]:
    """Who may change a directory resource: the Organization or Practitioner itself, the
    organization of a PractitionerRole, Location or HealthcareService."""
    kind = body.get("resourceType", "")
    itself = f"{kind}/{body['id']}" if body.get("id") else None
    if kind == "Practitioner":
        return frozenset({itself} if itself else set())
    if kind == "Organization":
        parent = await of_actor(reader, local(body.get("partOf"), own_base), own_base)
        return parent | ({itself} if itself else set())
    fields = {
        "PractitionerRole": ("organization", "practitioner"),
        "Location": ("managingOrganization",),
        "HealthcareService": ("providedBy",),
    }.get(kind, ())
    found: set[str] = set()
    for name in fields:
        found |= await of_actor(reader, local(body.get(name), own_base), own_base)
    return frozenset(found)


async def labelled(
    reader: Reader, references: list[str | None]
) -> tuple[frozenset[str], frozenset[str]]:
    """The owner and client labels of the resources referenced (`Type/id`), together."""
    keys = [tuple(r.split("/", 1)) for r in references if r]
    found = await reader.current_many([(k[0], k[1]) for k in keys if len(k) == 2])
    owner_refs: set[str] = set()
    client_ids: set[str] = set()
    for version in found:
        owner_refs |= labels.owners(version.body)
        client_ids |= labels.clients(version.body)
    return frozenset(owner_refs), frozenset(client_ids)
