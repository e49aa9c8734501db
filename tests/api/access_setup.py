"""Two owners to grant from: a hospital group whose hospital employs Dr Martin, and a private
clinic with Dr Petit; each with its own agenda client, a Schedule and free slots. Shared by the
access tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.api.scheduling_setup import TOMORROW, add_slots
from tests.conftest import AppClient
from tests.factories import (
    CONSULTATION,
    FHIR_JSON,
    create,
    fresh_rpps,
    make_practitioner,
    make_schedule,
    ref,
)


@dataclass
class Owner:
    organization: dict[str, Any]
    practitioner: dict[str, Any]
    schedule: dict[str, Any]
    slots: list[str]
    agenda: httpx.AsyncClient  # the owner's own client

    @property
    def ref(self) -> str:
        return ref(self.organization)


async def open_owner(
    admin: httpx.AsyncClient,
    app_client: AppClient,
    name: str,
    *,
    parent: dict[str, Any] | None = None,
    slots: int = 3,
) -> Owner:
    """An organization (under `parent`, when given) with one practitioner's Schedule: the
    directory written by the operator, the Schedule and Slots by the owner's own client."""
    organization: dict[str, Any] = {"resourceType": "Organization", "name": name, "active": True}
    if parent is not None:
        organization["partOf"] = {"reference": ref(parent)}
    organization = await create(admin, organization)
    practitioner = await create(admin, make_practitioner(fresh_rpps(), family=f"Dr {name}"))
    role = await create(
        admin,
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": ref(practitioner)},
            "organization": {"reference": ref(organization)},
        },
    )
    top = parent or organization
    agenda = await app_client(f"agenda of {name}", owners=(ref(top),), scope="system/*.cruds")
    schedule = await create(agenda, make_schedule(ref(role), serviceType=[CONSULTATION]))
    ids = await add_slots(agenda, schedule, slots, first=TOMORROW)
    return Owner(organization, practitioner, schedule, ids, agenda)


def grant_parameters(client: str, *access: str, quota: int | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "client", "valueString": client}]
    parts += [{"name": "access", "valueCode": code} for code in access]
    if quota is not None:
        parts.append({"name": "quota", "valueInteger": quota})
    return {"resourceType": "Parameters", "parameter": parts}


async def grant(
    owner_client: httpx.AsyncClient, owner: str, client: str, *access: str, quota: int | None = None
) -> httpx.Response:
    return await owner_client.post(
        f"/fhir/{owner}/$grant",
        json=grant_parameters(client, *access, quota=quota),
        headers=FHIR_JSON,
    )


async def revoke(owner_client: httpx.AsyncClient, owner: str, client: str) -> httpx.Response:
    body = {"resourceType": "Parameters", "parameter": [{"name": "client", "valueString": client}]}
    return await owner_client.post(f"/fhir/{owner}/$revoke", json=body, headers=FHIR_JSON)


async def visible_slots(client: httpx.AsyncClient, **params: str) -> set[str]:
    response = await client.get("/fhir/Slot", params={"_count": "500", **params})
    assert response.status_code == 200, response.text
    return {
        e["resource"]["id"]
        for e in response.json().get("entry", [])
        if e["search"]["mode"] == "match"
    }
