"""Bundles and JSON Patch within their caps: entries ordered in linear time (chains, cycles),
`bundle_entries`, `patch_operations`, `patch_result_bytes`; beyond a cap, 400 and no change."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from server.api import bundles
from server.config import Settings
from server.limits import Limits
from tests.api.test_bundles import bundle, entry, history_size, post, search
from tests.factories import (
    create,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    participants,
    ref,
)

LIMITS = replace(Limits(), bundle_entries=400, patch_result_bytes=32 * 1024, request_seconds=0)
PATCH_JSON = {"Content-Type": "application/json-patch+json"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Bodies of a few hundred entries; small patched resources; no time budget (nx-27017 is
    slow, and these tests count work, not time)."""
    return replace(settings, max_body_bytes=1024 * 1024, limits=LIMITS)


def urn(number: int) -> str:
    return f"urn:uuid:00000000-0000-4000-8000-{number:012d}"


def linked_patient(*others: str) -> dict[str, Any]:
    """A Patient whose `link`s reference other entries (references that need not resolve)."""
    links = [{"other": {"reference": other}, "type": "seealso"} for other in others]
    return {**make_patient(), "link": links} if links else make_patient()


# Ordering, as a pure function: linear work, no recursion, references first, cycles in order


def count_visits(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often the ordering walks a resource's references and enters an entry."""
    visits: Counter[str] = Counter()
    walk, enter = bundles._references, bundles._Components._enter

    def walked(node: Any) -> set[str]:
        visits["walked"] += 1
        return walk(node)

    def entered(self: bundles._Components, node: int) -> Iterator[int]:
        visits["entered"] += 1
        return enter(self, node)

    monkeypatch.setattr(bundles, "_references", walked)
    monkeypatch.setattr(bundles._Components, "_enter", entered)
    return visits


def order_of(entries: list[dict[str, Any]]) -> list[int]:
    return bundles._execution_order(entries, bundles._new_ids(entries))


def test_a_long_chain_is_ordered_references_first_walking_each_entry_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Entry n references entry n + 1: the last is created first. 2,000 deep: no recursion."""
    size = 2000
    entries = [entry("POST", "Patient", linked_patient(urn(n + 1)), urn(n)) for n in range(size)]
    visits = count_visits(monkeypatch)
    assert order_of(entries) == list(reversed(range(size)))
    assert visits == {"walked": size, "entered": size}


def test_a_cycle_is_ordered_in_bundle_order_after_what_it_references(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """500 entries in a cycle (n → n + 1, the last → the first), one of them also referencing a
    Schedule listed after them: the Schedule first, then the cycle in Bundle order."""
    size = 500
    schedule = entry("POST", "Schedule", make_schedule("Practitioner/x"), urn(size))
    cycle = [
        entry("POST", "Patient", linked_patient(urn((n + 1) % size)), urn(n)) for n in range(size)
    ]
    cycle[7]["resource"]["generalPractitioner"] = [{"reference": urn(size)}]
    entries = [entry("GET", "Patient"), *cycle, schedule, entry("DELETE", "Patient/gone")]
    visits = count_visits(monkeypatch)
    order = order_of(entries)
    delete, get = len(entries) - 1, 0
    assert order == [delete, size + 1, *range(1, size + 1), get]
    assert visits == {"walked": size + 1, "entered": size + 1}


def test_entries_all_referencing_each_other_keep_bundle_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = 30
    entries = [
        entry("POST", "Patient", linked_patient(*(urn(o) for o in range(size) if o != n)), urn(n))
        for n in range(size)
    ]
    visits = count_visits(monkeypatch)
    assert order_of(entries) == list(range(size))
    assert visits == {"walked": size, "entered": size}


# Transactions over HTTP


async def test_a_transaction_of_entries_all_referencing_each_other(
    client: httpx.AsyncClient,
) -> None:
    size = 30
    entries = [
        entry("POST", "Patient", linked_patient(*(urn(o) for o in range(size) if o != n)), urn(n))
        for n in range(size)
    ]
    response = await post(client, bundle("transaction", *entries))
    assert response.status_code == 200, response.text
    assert "urn:uuid" not in response.text
    created = [e["resource"] for e in response.json()["entry"]]
    ids = {ref(patient) for patient in created}
    for patient in created:
        linked = {link["other"]["reference"] for link in patient["link"]}
        assert linked == ids - {ref(patient)}
    assert len(await search(client, "Patient?_count=100")) == size


def schedule_referencing(slot: str) -> dict[str, Any]:
    first_slot = {
        "url": "https://example.org/StructureDefinition/first-slot",
        "valueReference": {"reference": slot},
    }
    return {**make_schedule("Practitioner/x"), "extension": [first_slot]}


@pytest.mark.parametrize("slot_first", [False, True], ids=["schedule-first", "slot-first"])
async def test_a_cycle_is_written_in_bundle_order(
    client: httpx.AsyncClient, slot_first: bool
) -> None:
    """A Schedule and a Slot referencing each other: the Slot's reference must resolve when it
    is written, so the transaction succeeds only if the Schedule comes first in the Bundle."""
    schedule = entry("POST", "Schedule", schedule_referencing(urn(2)), urn(1))
    slot = entry("POST", "Slot", make_slot(urn(1)), urn(2))
    entries = [slot, schedule] if slot_first else [schedule, slot]
    response = await post(client, bundle("transaction", *entries))
    if slot_first:
        assert response.status_code == 422, response.text
        assert response.json()["issue"][0]["expression"] == ["Slot.schedule"]
        assert await history_size(client) == 0
        return
    assert response.status_code == 200, response.text
    stored_schedule, stored_slot = (e["resource"] for e in response.json()["entry"])
    assert stored_slot["schedule"]["reference"] == ref(stored_schedule)
    assert stored_schedule["extension"][0]["valueReference"]["reference"] == ref(stored_slot)


def agenda_chain(appointments: int, patients: int) -> list[dict[str, Any]]:
    """Appointments → their Slots → one Schedule → its Practitioner, then a chain of Patients
    (each linking to the next), every reference pointing at an entry listed after it."""
    tomorrow = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    slot_urn, patient_urn = (lambda n: urn(1000 + n)), (lambda n: urn(2000 + n))
    booked = [
        entry(
            "POST",
            "Appointment",
            {
                "resourceType": "Appointment",
                "status": "proposed",
                "slot": [{"reference": slot_urn(n)}],
                "participant": participants(patient_urn(n)),
            },
        )
        for n in range(appointments)
    ]
    slots = [
        entry("POST", "Slot", make_slot(urn(1), tomorrow + timedelta(minutes=15 * n)), slot_urn(n))
        for n in range(appointments)
    ]
    people = [
        entry(
            "POST",
            "Patient",
            linked_patient(patient_urn(n + 1)) if n + 1 < patients else make_patient(),
            patient_urn(n),
        )
        for n in range(patients)
    ]
    return [
        *booked,
        *slots,
        entry("POST", "Schedule", make_schedule(urn(0)), urn(1)),
        entry("POST", "Practitioner", make_practitioner(), urn(0)),
        *people,
    ]


async def test_a_transaction_of_400_entries_in_reference_chains(client: httpx.AsyncClient) -> None:
    entries = agenda_chain(appointments=10, patients=378)
    assert len(entries) == LIMITS.bundle_entries
    response = await post(client, bundle("transaction", *entries))
    assert response.status_code == 200, response.text
    assert "urn:uuid" not in response.text
    statuses = {e["response"]["status"].split()[0] for e in response.json()["entry"]}
    assert statuses == {"201"}
    assert len(await search(client, "Appointment?_count=100")) == 10
    assert len(await search(client, "Slot?_count=100")) == 10
    assert len(await search(client, "Patient?_count=1000")) == 378


@pytest.mark.parametrize("kind", ["transaction", "batch"])
async def test_a_bundle_beyond_bundle_entries_is_refused_whole(
    client: httpx.AsyncClient, kind: str
) -> None:
    entries = [entry("POST", "Patient", make_patient()) for _ in range(LIMITS.bundle_entries + 1)]
    response = await post(client, bundle(kind, *entries))
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "too-costly"
    assert "bundle_entries" in issue["diagnostics"]
    assert await history_size(client) == 0


# JSON Patch


def doubling_copies(operations: int) -> list[dict[str, Any]]:
    """Each copy appends the whole `name` array to itself: the resource doubles every time."""
    return [{"op": "copy", "from": "/name", "path": "/name/-"}] * operations


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


REFUSED_PATCHES = {
    "too-many-operations": (
        [{"op": "test", "path": "/gender", "value": "female"}] * (LIMITS.patch_operations + 1),
        "too-costly",
        "patch_operations",
    ),
    "doubling-copies": (doubling_copies(20), "too-costly", "patch_result_bytes"),
    "too-deep": (
        [{"op": "add", "path": "/name/0/period", "value": nested(46)}],
        "structure",
        "deeper",
    ),
}


async def patch(
    client: httpx.AsyncClient, resource: dict[str, Any], operations: Any
) -> httpx.Response:
    url = f"/fhir/{ref(resource)}"
    return await client.patch(url, content=orjson.dumps(operations), headers=PATCH_JSON)


async def assert_unchanged(client: httpx.AsyncClient, resource: dict[str, Any]) -> None:
    assert (await client.get(f"/fhir/{ref(resource)}")).json() == resource
    history = (await client.get(f"/fhir/{ref(resource)}/_history")).json()
    assert len(history["entry"]) == 1


@pytest.mark.parametrize("refused", list(REFUSED_PATCHES), ids=list(REFUSED_PATCHES))
async def test_a_patch_beyond_its_caps_is_400_and_changes_nothing(
    client: httpx.AsyncClient, refused: str
) -> None:
    operations, code, named = REFUSED_PATCHES[refused]
    patient = await create(client, make_patient())
    response = await patch(client, patient, operations)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == code
    assert named in issue["diagnostics"]
    await assert_unchanged(client, patient)


async def test_patches_within_the_caps_still_work(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    not_fhir = await patch(client, patient, doubling_copies(1))  # within the caps, not FHIR
    assert not_fhir.status_code == 422, not_fhir.text
    as_number = await patch(client, patient, [{"op": "replace", "path": "", "value": 5}])
    assert as_number.status_code == 422, as_number.text
    await assert_unchanged(client, patient)
    operations = [
        *[{"op": "test", "path": "/gender", "value": "female"}] * (LIMITS.patch_operations - 2),
        {"op": "copy", "from": "/name/0", "path": "/name/-"},
        {"op": "replace", "path": "/gender", "value": "other"},
    ]
    response = await patch(client, patient, operations)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "2"
    assert response.json()["gender"] == "other"
    assert response.json()["name"] == patient["name"] * 2


def patch_entry(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(orjson.dumps(operations)).decode(),
    }
    return entry("PATCH", ref(resource), binary)


@pytest.mark.parametrize("refused", list(REFUSED_PATCHES), ids=list(REFUSED_PATCHES))
async def test_a_patch_entry_beyond_its_caps_fails_the_transaction(
    client: httpx.AsyncClient, refused: str
) -> None:
    operations, code, named = REFUSED_PATCHES[refused]
    patient = await create(client, make_patient())
    before = await history_size(client)
    response = await post(
        client,
        bundle(
            "transaction",
            entry("POST", "Patient", make_patient(family="Nouveau")),
            patch_entry(patient, operations),
        ),
    )
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == code
    assert issue["diagnostics"].startswith("Bundle.entry[1]: ")
    assert named in issue["diagnostics"]
    assert await history_size(client) == before
    await assert_unchanged(client, patient)


async def test_a_patch_entry_beyond_its_caps_fails_alone_in_a_batch(
    client: httpx.AsyncClient,
) -> None:
    patient = await create(client, make_patient())
    response = await post(
        client,
        bundle(
            "batch",
            patch_entry(patient, doubling_copies(20)),
            entry("POST", "Patient", make_patient(family="Nouveau")),
        ),
    )
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"].split()[0] for e in response.json()["entry"]]
    assert statuses == ["400", "201"]
    await assert_unchanged(client, patient)


async def test_a_patch_entry_applies_to_what_earlier_entries_wrote(
    client: httpx.AsyncClient,
) -> None:
    """The patch tried before the transaction opened saw version 1; the PUT before it in the
    Bundle made version 2, which the patch then applies to."""
    patient = await create(client, make_patient())
    response = await post(
        client,
        bundle(
            "transaction",
            entry("PUT", ref(patient), {**patient, "gender": "other"}),
            patch_entry(patient, [{"op": "replace", "path": "/birthDate", "value": "1990-01-01"}]),
        ),
    )
    assert response.status_code == 200, response.text
    put, patched = (e["resource"] for e in response.json()["entry"])
    assert put["meta"]["versionId"] == "2"
    assert patched["meta"]["versionId"] == "3"
    assert (patched["gender"], patched["birthDate"]) == ("other", "1990-01-01")
