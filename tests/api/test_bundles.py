"""Transaction and batch Bundles: all or nothing, urn:uuid references, the response Bundle."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle

from tests.factories import (
    FHIR_JSON,
    RPPS,
    create,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    ref,
)

PRACTITIONER_URN = "urn:uuid:8f6c1b9e-0d7a-4e55-9d1e-3b1c2a4f5e61"
SCHEDULE_URN = "urn:uuid:2c0b9d7e-6a41-4f3a-8e2d-7c5b1a9e0f42"
SLOT_URN = "urn:uuid:c3d1e2f4-5a6b-4c7d-8e9f-0a1b2c3d4e53"


def entry(
    method: str,
    url: str,
    resource: dict[str, Any] | None = None,
    full_url: str | None = None,
    **request: str,
) -> dict[str, Any]:
    item: dict[str, Any] = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        item["resource"] = resource
    if full_url:
        item["fullUrl"] = full_url
    return item


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/fhir", json=body, headers=FHIR_JSON)


async def history_size(client: httpx.AsyncClient) -> int:
    response = await client.get("/fhir/_history?_count=1000")
    return len(response.json().get("entry", []))


async def search(client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    response = await client.get(f"/fhir/{query}")
    assert response.status_code == 200, response.text
    return [
        e["resource"] for e in response.json().get("entry", []) if e["search"]["mode"] == "match"
    ]


def agenda_entries(order: tuple[int, ...] = (0, 1, 2)) -> list[dict[str, Any]]:
    """A practitioner, their schedule and one slot, linked by urn:uuid references."""
    entries = [
        entry("POST", "Practitioner", make_practitioner(), PRACTITIONER_URN),
        entry("POST", "Schedule", make_schedule(PRACTITIONER_URN), SCHEDULE_URN),
        entry("POST", "Slot", make_slot(SCHEDULE_URN), SLOT_URN),
    ]
    return [entries[position] for position in order]


@pytest.mark.parametrize(
    "order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)], ids=["in-order", "reversed", "shuffled"]
)
async def test_transaction_resolves_urn_uuid_references_in_any_order(
    client: httpx.AsyncClient, order: tuple[int, ...]
) -> None:
    response = await post(client, bundle("transaction", *agenda_entries(order)))
    assert response.status_code == 200, response.text
    result = response.json()
    Bundle.model_validate(result)
    assert result["type"] == "transaction-response"
    created = {e["resource"]["resourceType"]: e["resource"] for e in result["entry"]}
    assert [e["resource"]["resourceType"] for e in result["entry"]] == [
        ["Practitioner", "Schedule", "Slot"][position] for position in order
    ]
    practitioner, schedule, slot = (created[t] for t in ("Practitioner", "Schedule", "Slot"))
    assert schedule["actor"] == [{"reference": ref(practitioner)}]
    assert slot["schedule"] == {"reference": ref(schedule)}
    stored = (await client.get(f"/fhir/{ref(slot)}")).json()
    assert stored["schedule"]["reference"] == ref(schedule)
    assert (await client.get(f"/fhir/{ref(schedule)}")).json()["actor"][0]["reference"] == ref(
        practitioner
    )
    found = await search(client, f"Slot?schedule.actor={ref(practitioner)}")
    assert [s["id"] for s in found] == [slot["id"]]
    assert "urn:uuid" not in response.text


async def test_transaction_response_has_one_entry_per_request_in_order(
    client: httpx.AsyncClient,
) -> None:
    patient = await create(client, make_patient())
    doomed = await create(client, make_patient(family="Petit"))
    changed = {**patient, "gender": "other"}
    response = await post(
        client,
        bundle(
            "transaction",
            entry("GET", f"Patient/{patient['id']}"),
            entry("PUT", f"Patient/{patient['id']}", changed),
            entry("POST", "Patient", make_patient(family="Nouveau")),
            entry("DELETE", f"Patient/{doomed['id']}"),
            entry("PUT", "Patient/chosen-id", {**make_patient(family="Choisi"), "id": "chosen-id"}),
        ),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    Bundle.model_validate(result)
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"].split()[0] for e in result["entry"]]
    assert statuses == ["200", "200", "201", "204", "201"]
    read, updated, created, deleted, put_created = result["entry"]
    # GET runs after the writes (the specification's order), so it sees the update.
    assert read["resource"]["id"] == patient["id"]
    assert read["resource"]["gender"] == "other"
    assert read["response"]["etag"] == 'W/"2"'
    assert updated["resource"]["gender"] == "other"
    assert updated["response"]["etag"] == 'W/"2"'
    assert updated["response"]["lastModified"]
    new_id = created["resource"]["id"]
    assert created["response"]["location"].endswith(f"Patient/{new_id}/_history/1")
    assert created["response"]["etag"] == 'W/"1"'
    assert created["fullUrl"].endswith(f"/Patient/{new_id}")
    assert "resource" not in deleted
    assert put_created["response"]["location"].endswith("Patient/chosen-id/_history/1")
    assert (await client.get(f"/fhir/Patient/{doomed['id']}")).status_code == 410
    assert (await client.get(f"/fhir/Patient/{patient['id']}")).json()["gender"] == "other"
    assert (await client.get(f"/fhir/Patient/{new_id}")).status_code == 200
    assert (await client.get("/fhir/Patient/chosen-id")).status_code == 200


BAD_ENTRIES = {
    "invalid-resource": entry("POST", "Patient", {**make_patient(), "gender": "robot"}),
    "unknown-schedule": entry("POST", "Slot", make_slot("Schedule/nowhere")),
    "stale-if-match": entry(
        "PUT", "Patient/EXISTING", {**make_patient(), "id": "EXISTING"}, ifMatch='W/"9"'
    ),
    "unknown-type": entry("POST", "Unicorn", {"resourceType": "Unicorn"}),
    "type-mismatch": entry("POST", "Practitioner", make_patient()),
    "read-missing": entry("GET", "Patient/nobody"),
    "bad-method-url": entry("DELETE", ""),
}


@pytest.mark.parametrize("position", [0, -1], ids=["bad-first", "bad-last"])
@pytest.mark.parametrize("bad", list(BAD_ENTRIES), ids=list(BAD_ENTRIES))
async def test_transaction_is_all_or_nothing(
    client: httpx.AsyncClient, bad: str, position: int
) -> None:
    existing = await create(client, make_patient(family="Existant"))
    before = await history_size(client)
    broken = dict(BAD_ENTRIES[bad])
    if "EXISTING" in str(broken):
        broken = entry(
            "PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}, ifMatch='W/"9"'
        )
    entries = [
        *agenda_entries(),
        entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "other"}),
        entry("DELETE", f"Patient/{existing['id']}")
        if bad != "stale-if-match"
        else entry("GET", "Patient"),
    ]
    entries.insert(position if position >= 0 else len(entries), broken)
    response = await post(client, bundle("transaction", *entries))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await history_size(client) == before
    assert await search(client, "Practitioner") == []
    assert await search(client, "Schedule") == []
    assert await search(client, "Slot") == []
    assert (await client.get(f"/fhir/Patient/{existing['id']}")).json() == existing


async def test_transaction_if_none_exist_reuses_the_match(client: httpx.AsyncClient) -> None:
    known = await create(client, make_practitioner(rpps="810000000099"))
    condition = f"identifier={RPPS}|810000000099"
    entries = agenda_entries()
    entries[0] = entry(
        "POST",
        "Practitioner",
        make_practitioner(rpps="810000000099"),
        PRACTITIONER_URN,
        ifNoneExist=condition,
    )
    response = await post(client, bundle("transaction", *entries))
    assert response.status_code == 200, response.text
    first, schedule, _ = response.json()["entry"]
    assert first["response"]["status"].startswith("200")
    assert first["resource"]["id"] == known["id"]
    assert schedule["resource"]["actor"][0]["reference"] == ref(known)
    assert len(await search(client, "Practitioner")) == 1
    assert (await client.get(f"/fhir/{ref(known)}/_history")).json()["entry"][0]["resource"][
        "meta"
    ]["versionId"] == "1"
    fresh = entry(
        "POST",
        "Practitioner",
        make_practitioner(rpps="810000000100"),
        ifNoneExist=f"identifier={RPPS}|810000000100",
    )
    again = await post(client, bundle("transaction", fresh))
    assert again.json()["entry"][0]["response"]["status"].startswith("201")
    assert len(await search(client, "Practitioner")) == 2


async def test_transaction_if_none_exist_matching_two_fails_whole(
    client: httpx.AsyncClient,
) -> None:
    vendor = [{"system": "https://editeur.example/id", "value": "42"}]  # not a national system
    await create(client, {**make_practitioner(family="A"), "identifier": vendor})
    await create(client, {**make_practitioner(family="B"), "identifier": vendor})
    before = await history_size(client)
    entries = agenda_entries()
    entries[0]["request"]["ifNoneExist"] = "identifier=https://editeur.example/id|42"
    response = await post(client, bundle("transaction", *entries))
    assert response.status_code == 412, response.text
    assert await history_size(client) == before


async def test_transaction_conditional_put_and_delete(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner(rpps="810000000077"))
    patient = await create(client, make_patient(family="Conditionnel"))
    response = await post(
        client,
        bundle(
            "transaction",
            entry(
                "PUT",
                f"Practitioner?identifier={RPPS}|810000000077",
                make_practitioner(rpps="810000000077", family="Renommée"),
            ),
            entry("DELETE", "Patient?family=Conditionnel"),
        ),
    )
    assert response.status_code == 200, response.text
    put, delete = response.json()["entry"]
    assert put["resource"]["id"] == practitioner["id"]
    assert put["resource"]["meta"]["versionId"] == "2"
    assert delete["response"]["status"].startswith("204")
    assert (await client.get(f"/fhir/{ref(patient)}")).status_code == 410


async def test_batch_runs_entries_independently(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    response = await post(
        client,
        bundle(
            "batch",
            entry("POST", "Patient", make_patient(family="Bon")),
            entry("POST", "Slot", make_slot("Schedule/nowhere")),
            entry("PUT", f"Patient/{patient['id']}", {**patient, "gender": "other"}),
            entry("GET", "Patient/nobody"),
            entry("POST", "Patient", {**make_patient(), "gender": "robot"}),
            entry("GET", f"Patient/{patient['id']}"),
        ),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    Bundle.model_validate(result)
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in result["entry"]]
    assert statuses == ["201", "422", "200", "404", "422", "200"]
    for failed in (result["entry"][1], result["entry"][3], result["entry"][4]):
        assert failed["response"]["outcome"]["resourceType"] == "OperationOutcome"
        assert "resource" not in failed
    assert result["entry"][1]["response"]["outcome"]["issue"][0]["expression"] == ["Slot.schedule"]
    assert result["entry"][5]["resource"]["gender"] == "other"
    assert [p["name"][0]["family"] for p in await search(client, "Patient?_sort=family")] == [
        "Bon",
        "Durand",
    ]
    assert await search(client, "Slot") == []


async def test_batch_entries_do_not_see_each_others_urn_uuids(client: httpx.AsyncClient) -> None:
    """In a batch, entries are independent: a urn:uuid reference is not resolved, so a Slot on
    a Schedule POSTed in the same batch fails on its own, and the Schedule is kept."""
    response = await post(client, bundle("batch", *agenda_entries()[1:]))
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"].split()[0] for e in response.json()["entry"]]
    assert statuses[0] == "201" and statuses[1] in ("400", "422")
    assert len(await search(client, "Schedule")) == 1
    assert await search(client, "Slot") == []


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Bundle", "type": "collection", "entry": []},
        {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": make_patient()}]},
        {"resourceType": "Bundle", "type": "transaction", "entry": {"not": "a list"}},
        {"resourceType": "Bundle", "type": "transaction", "entry": ["x"]},
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "TRACE", "url": "Patient"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "POST", "url": 5}, "resource": make_patient()}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": "text"}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:1",
                    "request": {"method": "POST", "url": "Patient"},
                    "resource": make_patient(),
                },
                {
                    "fullUrl": "urn:uuid:1",
                    "request": {"method": "POST", "url": "Patient"},
                    "resource": make_patient(),
                },
            ],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": 7,
                    "request": {"method": "POST", "url": "Patient"},
                    "resource": make_patient(),
                }
            ],
        },
        make_patient(),
    ],
    ids=[
        "collection",
        "no-request",
        "entry-object",
        "entry-string",
        "trace",
        "url-number",
        "resource-string",
        "duplicate-fullurl",
        "fullurl-number",
        "not-a-bundle",
    ],
)
async def test_malformed_bundle_is_4xx_and_changes_nothing(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await post(client, body)
    assert 400 <= response.status_code < 500, response.text
    if response.json()["resourceType"] == "Bundle":  # a batch reports per entry
        assert all(not e["response"]["status"].startswith("2") for e in response.json()["entry"])
    else:
        assert response.json()["resourceType"] == "OperationOutcome"
    assert await history_size(client) == 0
