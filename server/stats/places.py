"""Where a counted resource is, as a department: read from the addresses of the places it
names (a Location's address; a PractitionerRole's location, contained or referenced, else its
organization's; a Practitioner's or an Organization's first French address).

Each resource read is one read by key; a place whose address says nothing usable gives way to
the next one named, and none at all gives `tags.NONE`.
"""

from __future__ import annotations

from typing import Any

from server.fhir.values import split_reference
from server.stats import departments, tags
from server.store.base import Reader

Body = dict[str, Any]
# The order in which a Schedule's (or an Appointment's) actors are looked at.
PLACE_TYPES = ("Location", "PractitionerRole", "Practitioner", "Organization")


def local(reference: Any, own_base: str) -> str | None:
    """ "Type/id" of a literal reference to a resource of this server, else None."""
    literal = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(literal, str):
        return None
    kind, ident = split_reference(literal, own_base)
    return f"{kind}/{ident}" if kind and ident else None


def by_kind(references: list[str]) -> list[str]:
    """The references to places, Locations first (`PLACE_TYPES`), each kind in given order."""
    return [r for kind in PLACE_TYPES for r in references if r.startswith(f"{kind}/")]


async def department(reader: Reader, references: list[str], own_base: str) -> str:
    """The department of the first of `references` that has one."""
    for reference in references:
        found = await _of(reader, reference, own_base)
        if found:
            return found
    return tags.NONE


async def read(reader: Reader, reference: str) -> Body | None:
    """The live body behind a "Type/id" reference, or None."""
    kind, _, ident = reference.partition("/")
    current = await reader.current(kind, ident)
    return current.body if current is not None else None


async def _of(reader: Reader, reference: str, own_base: str) -> str | None:
    body = await read(reader, reference)
    if body is None:
        return None
    if body.get("resourceType") == "PractitionerRole":
        return await _of_role(reader, body, own_base)
    return address_department(body)


def address_department(body: Body) -> str | None:
    """The department of a Location's address, or of the first French one of a Practitioner
    or an Organization."""
    address = body.get("address")
    for item in address if isinstance(address, list) else [address]:
        found = departments.of_address(item)
        if found:
            return found
    return None


async def _of_role(reader: Reader, role: Body, own_base: str) -> str | None:
    """A PractitionerRole's place: its locations (contained ones too), then its organization."""
    contained = {f"#{c.get('id')}": c for c in role.get("contained", []) if isinstance(c, dict)}
    for location in role.get("location", []):
        literal = location.get("reference") if isinstance(location, dict) else None
        target = contained.get(literal) if isinstance(literal, str) else None
        if target is None and (reference := local(location, own_base)):
            target = await read(reader, reference) if reference.startswith("Location/") else None
        found = address_department(target) if target else None
        if found:
            return found
    organization = local(role.get("organization"), own_base)
    if organization and organization.startswith("Organization/"):
        target = await read(reader, organization)
        return address_department(target) if target else None
    return None
