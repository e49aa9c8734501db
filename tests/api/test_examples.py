"""Round trip of the official HL7 examples: PUT each at its own id, GET it back unchanged.

Only the references this server must resolve (Slot.schedule, Appointment.slot) are created
first, under the ids the example uses; every other reference may dangle. Slot/example names
Schedule/example, which is Schedule.json itself. Appointment/example has no `slot` (it is a
booked appointment made without slots), so nothing is created before it; the code still creates
the Slots an Appointment example would name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth import labels
from server.scheduling.vocabulary import SERVER_MANAGED
from tests.factories import FHIR_JSON

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
FILES = sorted(EXAMPLES.glob("*.json"))
SERVER_META = ("versionId", "lastUpdated")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """Without what the server adds: meta's version and time, its access labels, and its own
    records (such as who booked an Appointment), the server-managed extensions."""
    meta = {k: v for k, v in resource.get("meta", {}).items() if k not in SERVER_META}
    security = [c for c in meta.pop("security", []) if c.get("system") not in labels.OURS]
    if security:
        meta["security"] = security
    trimmed = {k: v for k, v in resource.items() if k not in ("meta", "extension")}
    extensions = [e for e in resource.get("extension", []) if e["url"] not in SERVER_MANAGED]
    if extensions:
        trimmed["extension"] = extensions
    return {**trimmed, "meta": meta} if meta else trimmed


async def put(client: httpx.AsyncClient, resource: dict[str, Any]) -> httpx.Response:
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    return await client.put(url, json=resource, headers=FHIR_JSON)


async def create_required_targets(client: httpx.AsyncClient, example: dict[str, Any]) -> None:
    """The Schedule a Slot example names, the Slots an Appointment example names."""
    if example["resourceType"] == "Slot":
        schedule_id = example["schedule"]["reference"].split("/")[1]
        response = await put(client, {**load("Schedule.json"), "id": schedule_id})
        assert response.status_code == 201, response.text
    for slot in example.get("slot", []) if example["resourceType"] == "Appointment" else []:
        schedule = await put(client, load("Schedule.json"))
        assert schedule.status_code in (200, 201), schedule.text
        slot_id = slot["reference"].split("/")[1]
        response = await put(client, {**load("Slot.json"), "id": slot_id})
        assert response.status_code == 201, response.text


def test_every_served_example_type_is_here() -> None:
    names = {path.stem for path in FILES}
    assert {"Appointment", "AppointmentResponse", "Schedule", "Slot", "Patient"} <= names
    for path in FILES:
        assert load(path.name)["resourceType"] == path.stem


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
async def test_example_round_trip(client: httpx.AsyncClient, path: Path) -> None:
    example = load(path.name)
    await create_required_targets(client, example)
    created = await put(client, example)
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == 'W/"1"'
    assert without_server_meta(created.json()) == example
    read = await client.get(f"/fhir/{example['resourceType']}/{example['id']}")
    assert read.status_code == 200, read.text
    body = read.json()
    assert body["meta"]["versionId"] == "1" and body["meta"]["lastUpdated"]
    assert without_server_meta(body) == example


async def test_example_put_again_is_a_new_version_with_same_content(
    client: httpx.AsyncClient,
) -> None:
    example = load("Patient.json")
    assert (await put(client, example)).status_code == 201
    again = await put(client, example)
    assert again.status_code == 200 and again.json()["meta"]["versionId"] == "2"
    first = (await client.get(f"/fhir/Patient/{example['id']}/_history/1")).json()
    assert without_server_meta(first) == example == without_server_meta(again.json())


async def test_slot_example_needs_its_schedule(client: httpx.AsyncClient) -> None:
    refused = await put(client, load("Slot.json"))
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Slot.schedule"]
    assert (await client.get("/fhir/Slot/example")).status_code == 404
