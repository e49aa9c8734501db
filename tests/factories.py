"""Resources with sensible defaults, and the calls that create them over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

FHIR_JSON = {"Content-Type": "application/fhir+json"}
RPPS = "urn:oid:1.2.250.1.71.4.2.1"


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
