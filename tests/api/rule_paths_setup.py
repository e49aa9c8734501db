"""Every path that writes an Appointment, behind one call, and what a refused write must leave as
it was. Shared by the tests of the rules on every path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.api.scheduling_setup import add_slots, ledger, open_practice
from tests.factories import FHIR_JSON, create, make_delivery, operate

# Paths that write a new Appointment, and paths that write the next version of a stored one.
CREATING = ("hold", "book", "post", "transaction")
UPDATING = ("put", "patch", "transaction")
PATCH_JSON = {"Content-Type": "application/json-patch+json"}


async def write(http: httpx.AsyncClient, path: str, appointment: dict[str, Any]) -> httpx.Response:
    """Send `appointment` by `path`: `hold`/`book` (appt-resource), `hold-id`/`book-id` (appt-id
    of its `id`), `post`, `put`, `patch` (the JSON Patch from the stored version to it), or
    `transaction` (a one-entry Bundle: POST without an id, PUT with one)."""
    appointment_id = appointment.get("id")
    if path in ("hold", "book"):
        return await operate(http, f"Appointment/${path}", ("appt-resource", appointment))
    if path in ("hold-id", "book-id"):
        operation = path.removesuffix("-id")
        return await operate(
            http, f"Appointment/${operation}", ("appt-id", f"Appointment/{appointment_id}")
        )
    if path == "post":
        return await http.post("/fhir/Appointment", json=appointment, headers=FHIR_JSON)
    url = f"/fhir/Appointment/{appointment_id}"
    if path == "put":
        return await http.put(url, json=appointment, headers=FHIR_JSON)
    if path == "patch":
        stored = (await http.get(url)).json()
        return await http.patch(url, json=patch_to(stored, appointment), headers=PATCH_JSON)
    assert path == "transaction", path
    request = {"method": "PUT", "url": f"Appointment/{appointment_id}"}
    if appointment_id is None:
        request = {"method": "POST", "url": "Appointment"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": appointment, "request": request}],
    }
    return await http.post("/fhir", json=bundle, headers=FHIR_JSON)


def patch_to(stored: dict[str, Any], wanted: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSON Patch that turns `stored` into `wanted`, element by element (meta left alone)."""
    operations: list[dict[str, Any]] = [
        {"op": "add", "path": f"/{name}", "value": value}
        for name, value in wanted.items()
        if name != "meta" and stored.get(name) != value
    ]
    operations += [
        {"op": "remove", "path": f"/{name}"}
        for name in stored
        if name not in wanted and name != "meta"
    ]
    return operations


@dataclass
class Clinic:
    """A vaccination Schedule with its free slots, doses delivered, one patient."""

    schedule: dict[str, Any]
    slots: list[str]
    place: str
    patient: dict[str, Any]
    delivery: dict[str, Any]


async def open_clinic(client: httpx.AsyncClient, *, slots: int = 1, doses: int = 1) -> Clinic:
    practice = await open_practice(client, patients=1)
    ids = await add_slots(client, practice.vaccinations, slots, minutes=5)
    delivery = await create(client, make_delivery(practice.place, doses))
    return Clinic(practice.vaccinations, ids, practice.place, practice.patients[0], delivery)


async def snapshot(
    client: httpx.AsyncClient, slots: list[str], place: str, appointments: tuple[str, ...] = ()
) -> dict[str, Any]:
    """What a refused write must not change: the versions of the slots and appointments, the
    appointments on the slots, the place's dose ledger. Read by an admin client."""
    versions = {}
    for reference in [f"Slot/{s}" for s in slots] + [f"Appointment/{a}" for a in appointments]:
        versions[reference] = (await client.get(f"/fhir/{reference}")).json()["meta"]["versionId"]
    on_slots = await client.get(
        "/fhir/Appointment",
        params={"slot": ",".join(f"Slot/{s}" for s in slots), "_count": "100"},
    )
    taking = sorted(
        (e["resource"]["id"], e["resource"]["meta"]["versionId"])
        for e in on_slots.json().get("entry", [])
    )
    return {"versions": versions, "appointments": taking, "doses": await ledger(client, place)}
