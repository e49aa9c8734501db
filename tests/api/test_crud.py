"""Create, read, vread, update, patch, delete, history and versioning over HTTP."""

from __future__ import annotations

import httpx

from tests.factories import FHIR_JSON, create, make_patient, make_practitioner


async def test_create_assigns_id_and_returns_location_and_etag(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/fhir/Patient", json={**make_patient(), "id": "client-id"}, headers=FHIR_JSON
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-id"
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"] == f"http://test/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["content-type"].startswith("application/fhir+json")


async def test_read_vread_update_and_history(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    url = f"/fhir/Patient/{patient['id']}"
    changed = {**patient, "gender": "other"}
    updated = await client.put(url, json=changed, headers=FHIR_JSON)
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    assert (await client.get(url)).json()["gender"] == "other"
    first = await client.get(f"{url}/_history/1")
    assert first.status_code == 200 and first.json()["gender"] == "female"
    history = (await client.get(f"{url}/_history")).json()
    assert history["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


async def test_update_as_create_with_client_id(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/fhir/Practitioner/rpps-1", json={**make_practitioner(), "id": "rpps-1"}, headers=FHIR_JSON
    )
    assert response.status_code == 201
    assert response.headers["location"].endswith("/Practitioner/rpps-1/_history/1")


async def test_if_match_mismatch_is_412_and_changes_nothing(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    url = f"/fhir/Patient/{patient['id']}"
    stale = await client.put(
        url, json={**patient, "gender": "male"}, headers={**FHIR_JSON, "If-Match": 'W/"7"'}
    )
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(url)).json()["meta"]["versionId"] == "1"
    fresh = await client.put(
        url, json={**patient, "gender": "male"}, headers={**FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert fresh.status_code == 200


async def test_json_patch(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    url = f"/fhir/Patient/{patient['id']}"
    operations = [{"op": "replace", "path": "/gender", "value": "male"}]
    response = await client.patch(
        url, json=operations, headers={"Content-Type": "application/json-patch+json"}
    )
    assert response.status_code == 200
    assert response.json()["gender"] == "male" and response.json()["meta"]["versionId"] == "2"
    bad = [{"op": "replace", "path": "/gender", "value": "robot"}]
    refused = await client.patch(
        url, json=bad, headers={"Content-Type": "application/json-patch+json"}
    )
    assert refused.status_code == 422
    wrong_version = await client.patch(
        url,
        json=operations,
        headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'},
    )
    assert wrong_version.status_code == 412


async def test_delete_then_gone_and_history_keeps_versions(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    url = f"/fhir/Patient/{patient['id']}"
    assert (await client.delete(url)).status_code == 204
    gone = await client.get(url)
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    history = (await client.get(f"{url}/_history")).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert (await client.get(f"{url}/_history/1")).status_code == 200
    assert (await client.delete(url)).status_code == 204


async def test_type_and_system_history(client: httpx.AsyncClient) -> None:
    await create(client, make_patient())
    await create(client, make_practitioner())
    patients = (await client.get("/fhir/Patient/_history")).json()
    assert {e["resource"]["resourceType"] for e in patients["entry"]} == {"Patient"}
    everything = (await client.get("/fhir/_history?_count=1")).json()
    assert len(everything["entry"]) == 1
    assert any(link["relation"] == "next" for link in everything["link"])


async def test_conditional_create_update_delete(client: httpx.AsyncClient) -> None:
    condition = "identifier=urn:oid:1.2.250.1.71.4.2.1|810000000011"
    first = await client.post(
        "/fhir/Practitioner",
        json=make_practitioner(),
        headers={**FHIR_JSON, "If-None-Exist": condition},
    )
    again = await client.post(
        "/fhir/Practitioner",
        json=make_practitioner(),
        headers={**FHIR_JSON, "If-None-Exist": condition},
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    renamed = {**make_practitioner(family="Martin-Roy")}
    updated = await client.put(f"/fhir/Practitioner?{condition}", json=renamed, headers=FHIR_JSON)
    assert updated.status_code == 200 and updated.json()["id"] == first.json()["id"]
    assert (await client.delete(f"/fhir/Practitioner?{condition}")).status_code == 204
    assert (await client.get(f"/fhir/Practitioner/{first.json()['id']}")).status_code == 410
