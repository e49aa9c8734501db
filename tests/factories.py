"""Resources with sensible defaults, and the calls that create them over HTTP."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
_FRESH_RPPS = itertools.count(810900000001)


def fresh_rpps() -> str:
    """An RPPS-like number no other call gives: a national identifier names one Practitioner
    (`server.scheduling.national_identifiers`), so helpers that make "a practitioner" each
    need their own."""
    return str(next(_FRESH_RPPS))


def make_practitioner(rpps: str = "810000000011", family: str = "Martin") -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": RPPS, "value": rpps}],
        "name": [{"family": family, "given": ["Claire"]}],
        "active": True,
    }


def make_schedule(actor: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Schedule", "active": True, "actor": [{"reference": actor}], **extra}


def make_slot(
    schedule: str,
    start: datetime | None = None,
    minutes: int = 15,
    status: str = "free",
    **extra: Any,
) -> dict[str, Any]:
    start = start or datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    return {
        "resourceType": "Slot",
        "schedule": {"reference": schedule},
        "status": status,
        "start": _instant(start),
        "end": _instant(start + timedelta(minutes=minutes)),
        **extra,
    }


def make_patient(family: str = "Durand", given: str = "Louise") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1987-03-14",
    }


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(
        f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


# Scheduling

SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"
CVX = "http://hl7.org/fhir/sid/cvx"
VACCINATION = {"coding": [{"system": SERVICE_TYPE, "code": "57", "display": "Immunization"}]}
CONSULTATION = {"coding": [{"system": SERVICE_TYPE, "code": "124", "display": "General Practice"}]}
COMIRNATY = {"system": CVX, "code": "208"}
VACCINE_PRODUCT = "http://fhir-registry.smarthealthit.org/StructureDefinition/vaccine-product"
SLOT_CAPACITY = "http://fhir-registry.smarthealthit.org/StructureDefinition/slot-capacity"


def make_location(
    name: str = "Centre de vaccination", postal_code: str = "75020"
) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "status": "active",
        "name": name,
        "address": {"city": "Paris", "postalCode": postal_code, "country": "FR"},
    }


def make_vaccination_schedule(*actors: str, vaccine: dict[str, str] = COMIRNATY) -> dict[str, Any]:
    return {
        **make_schedule(actors[0], serviceType=[VACCINATION]),
        "actor": [{"reference": actor} for actor in actors],
        "extension": [{"url": VACCINE_PRODUCT, "valueCoding": vaccine}],
    }


def make_delivery(place: str, doses: int, vaccine: dict[str, str] = COMIRNATY) -> dict[str, Any]:
    return {
        "resourceType": "SupplyDelivery",
        "status": "completed",
        "destination": {"reference": place},
        "suppliedItem": {
            "quantity": {"value": doses, "unit": "dose"},
            "itemCodeableConcept": {"coding": [vaccine]},
        },
    }


def parameters(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """A Parameters resource: a dict value is a resource if it has a resourceType, a str is a
    valueString, a bool a valueBoolean."""
    entries = []
    for name, value in pairs:
        if isinstance(value, dict) and "resourceType" in value:
            entries.append({"name": name, "resource": value})
        elif isinstance(value, bool):
            entries.append({"name": name, "valueBoolean": value})
        elif isinstance(value, dict):
            entries.append({"name": name, "valueReference": value})
        else:
            entries.append({"name": name, "valueString": value})
    return {"resourceType": "Parameters", "parameter": entries}


def participants(*actors: str) -> list[dict[str, Any]]:
    return [{"actor": {"reference": actor}, "status": "accepted"} for actor in actors]


async def operate(client: httpx.AsyncClient, path: str, *pairs: tuple[str, Any]) -> httpx.Response:
    return await client.post(f"/fhir/{path}", json=parameters(*pairs), headers=FHIR_JSON)


def appointment_in(response: httpx.Response) -> dict[str, Any]:
    """The first Appointment of an operation's collection Bundle."""
    resource: dict[str, Any] = response.json()["entry"][0]["resource"]
    return resource
