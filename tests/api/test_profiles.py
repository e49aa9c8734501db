"""Profiles over HTTP: a resource claiming a profile the server knows is checked against it on
every write path; an unknown one is a warning (an error under strict handling); `$validate`
answers what a write would say, and writes nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx

from tests.factories import FHIR_JSON, create, fresh_rpps, make_practitioner, make_schedule, ref

EXAMPLES = Path(__file__).resolve().parents[2] / "profiles/packages/ans.fhir.fr.sas-1.1.0/example"
SAS = "http://sas.fr/fhir/StructureDefinition"
FR_V2_0203 = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
CPTS_SLOT = (
    "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/sas-cpts-slot-aggregator"
)


def sas_practitioner() -> dict[str, Any]:
    body = make_practitioner(fresh_rpps())
    body["meta"] = {"profile": [f"{SAS}/FrPractitionerAgregateur"]}
    body["identifier"][0]["type"] = {"coding": [{"system": FR_V2_0203, "code": "IDNPS"}]}
    return body


def errors_at(response: httpx.Response) -> list[str]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [
        e for i in body["issue"] if i["severity"] in ("error", "fatal") for e in i["expression"]
    ]


async def history_size(client: httpx.AsyncClient) -> int:
    response = await client.get("/fhir/_history?_count=1000")
    return len(response.json().get("entry", []))


async def test_a_resource_meeting_its_profile_is_stored(client: httpx.AsyncClient) -> None:
    created = await client.post("/fhir/Practitioner", json=sas_practitioner(), headers=FHIR_JSON)
    assert created.status_code == 201, created.text


async def test_a_pattern_the_profile_asks_for_is_missing(client: httpx.AsyncClient) -> None:
    body = sas_practitioner()
    del body["identifier"][0]["type"]
    before = await history_size(client)
    refused = await client.post("/fhir/Practitioner", json=body, headers=FHIR_JSON)
    assert refused.status_code == 422
    assert "Practitioner.identifier[0].type" in errors_at(refused)
    assert await history_size(client) == before


async def test_a_cardinality_of_the_profile_is_held_on_update_and_patch(
    client: httpx.AsyncClient,
) -> None:
    stored = await create(client, sas_practitioner())
    without = {k: v for k, v in stored.items() if k != "identifier"}
    refused = await client.put(f"/fhir/Practitioner/{stored['id']}", json=without)
    assert refused.status_code == 422 and "Practitioner.identifier" in errors_at(refused)
    patch = [{"op": "remove", "path": "/identifier/0/system"}]
    patched = await client.patch(
        f"/fhir/Practitioner/{stored['id']}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 422, patched.text
    assert any(e.startswith("Practitioner.identifier[0]") for e in errors_at(patched))


async def test_a_fixed_value_and_a_required_binding_on_a_slot(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner(fresh_rpps()))
    schedule = await create(
        client,
        make_schedule(ref(practitioner), meta={"profile": [f"{SAS}/FrScheduleAgregateur"]}),
    )
    slot = json.loads((EXAMPLES / "Slot-ExampleSlotCPTS1.json").read_text())
    slot.pop("id")
    slot["schedule"] = {"reference": ref(schedule)}
    slot["serviceType"] = slot["serviceType"][:1]  # no HealthcareService here
    slot["start"], slot["end"] = "2031-06-12T16:40:00.000+02:00", "2031-06-12T17:00:00.000+02:00"
    assert (await client.post("/fhir/Slot", json=slot)).status_code == 201
    busy = {**copy.deepcopy(slot), "status": "busy"}
    refused = await client.post("/fhir/Slot", json=busy)
    assert refused.status_code == 422 and "Slot.status" in errors_at(refused)
    vip = copy.deepcopy(slot)
    vip["meta"]["security"].append({"system": TYPE_CRENEAU, "code": "VIP"})
    refused = await client.post("/fhir/Slot", json=vip)
    assert refused.status_code == 422 and "Slot.meta.security[2]" in errors_at(refused)


async def test_a_bundle_entry_is_held_to_its_profile(client: httpx.AsyncClient) -> None:
    body = sas_practitioner()
    del body["identifier"][0]["type"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": body, "request": {"method": "POST", "url": "Practitioner"}}],
    }
    refused = await client.post("/fhir", json=transaction)
    assert refused.status_code in (400, 422), refused.text
    assert "identifier[0].type" in refused.text


async def test_an_unknown_profile_is_a_warning_or_under_strict_handling_an_error(
    client: httpx.AsyncClient,
) -> None:
    body = make_practitioner(fresh_rpps())
    body["meta"] = {"profile": ["https://example.org/StructureDefinition/nowhere"]}
    answer = await client.post(
        "/fhir/Practitioner", json=body, headers={"Prefer": "return=OperationOutcome"}
    )
    assert answer.status_code == 201
    [warning] = [i for i in answer.json()["issue"] if i["severity"] == "warning"]
    assert warning["code"] == "not-supported"
    assert warning["expression"] == ["Practitioner.meta.profile[0]"]
    other = make_practitioner(fresh_rpps())
    other["meta"] = body["meta"]
    strict = await client.post(
        "/fhir/Practitioner", json=other, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 422 and errors_at(strict) == ["Practitioner.meta.profile[0]"]


async def test_validate_answers_and_writes_nothing(client: httpx.AsyncClient) -> None:
    before = await history_size(client)
    example = json.loads((EXAMPLES / "Practitioner-ExamplePractitioner.json").read_text())
    ok = await client.post("/fhir/Practitioner/$validate", json=example)
    assert ok.status_code == 200
    assert not [i for i in ok.json()["issue"] if i["severity"] == "error"]
    del example["identifier"][0]["type"]
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": example}],
    }
    bad = await client.post("/fhir/Practitioner/$validate", json=wrapped)
    assert bad.status_code == 200 and "Practitioner.identifier[0].type" in errors_at(bad)
    assert await history_size(client) == before


async def test_validate_an_instance_against_a_named_profile(client: httpx.AsyncClient) -> None:
    plain = await create(client, make_practitioner(fresh_rpps()))
    profile = f"{SAS}/FrPractitionerAgregateur"
    answer = await client.get(f"/fhir/Practitioner/{plain['id']}/$validate?profile={profile}")
    assert answer.status_code == 200
    assert "Practitioner.identifier[0].type" in errors_at(answer)
    unknown = await client.get(
        f"/fhir/Practitioner/{plain['id']}/$validate?profile=https://example.org/x"
    )
    assert errors_at(unknown) == ["Practitioner.meta.profile[0]"]
    missing = await client.get("/fhir/Practitioner/nobody/$validate")
    assert missing.status_code == 404


async def test_validate_refuses_a_profile_that_is_no_url(client: httpx.AsyncClient) -> None:
    """Found by the fuzz test: a number as `valueCanonical` was a 500."""
    asked = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": make_practitioner(fresh_rpps())},
            {"name": "profile", "valueCanonical": 62},
        ],
    }
    answer = await client.post("/fhir/Practitioner/$validate", json=asked)
    assert answer.status_code == 400, answer.text


async def test_validate_takes_the_profiles_the_ig_examples_claim(
    client: httpx.AsyncClient,
) -> None:
    for name in (
        "Slot-ExampleSlotPSIndiv1.json",
        "PractitionerRole-ExamplePractitionerRoleAgregateur.json",
    ):
        example = json.loads((EXAMPLES / name).read_text())
        answer = await client.post(f"/fhir/{example['resourceType']}/$validate", json=example)
        assert answer.status_code == 200
        assert not errors_at(answer), name


async def test_a_bundle_entry_says_what_it_was_accepted_despite(client: httpx.AsyncClient) -> None:
    unknown = make_practitioner(fresh_rpps())
    unknown["meta"] = {"profile": ["https://example.org/StructureDefinition/nowhere"]}
    known = sas_practitioner()
    entries = [
        {"resource": r, "request": {"method": "POST", "url": "Practitioner"}}
        for r in (unknown, known)
    ]
    for kind in ("transaction", "batch"):
        body = {"resourceType": "Bundle", "type": kind, "entry": entries}
        answer = await client.post("/fhir", json=body)
        assert answer.status_code == 200, answer.text
        first, second = (e["response"] for e in answer.json()["entry"])
        assert first["status"] == "201" and second["status"] == "201"
        [warning] = first["outcome"]["issue"]
        assert warning["severity"] == "warning" and warning["code"] == "not-supported"
        assert "outcome" not in second
        for entry in entries:
            entry["resource"]["identifier"][0]["value"] = fresh_rpps()
