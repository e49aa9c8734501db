"""National identifiers (RPPS, FINESS, …) name one resource of each type: a second live
Practitioner or Organization carrying one is refused on every path, even under concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from server.app import make_policy
from server.config import Settings
from server.scheduling.national_identifiers import DEFAULT_SYSTEMS
from tests.api.test_concurrency import skip_on_test_mongodb
from tests.factories import FHIR_JSON, RPPS, create, make_patient, make_practitioner, ref

IDNST = "urn:oid:1.2.250.1.71.4.2.2"  # FINESS, SIREN, SIRET… as national structure identifiers
ODS_SITE = "https://fhir.nhs.uk/Id/ods-site-code"
PATCH_JSON = {"Content-Type": "application/json-patch+json"}


def organization(finess: str, name: str = "Centre de santé") -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "identifier": [{"system": IDNST, "value": finess}],
        "name": name,
    }


def site(code: str) -> dict[str, Any]:
    return {"resourceType": "Location", "identifier": [{"system": ODS_SITE, "value": code}]}


def without_identifier(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "identifier"}


async def post(
    client: httpx.AsyncClient, resource: dict[str, Any], **headers: str
) -> httpx.Response:
    url = f"/fhir/{resource['resourceType']}"
    return await client.post(url, json=resource, headers={**FHIR_JSON, **headers})


async def transaction(client: httpx.AsyncClient, *entries: dict[str, Any]) -> httpx.Response:
    body = {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}
    return await client.post("/fhir", json=body, headers=FHIR_JSON)


def posting(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


async def carrying(client: httpx.AsyncClient, kind: str, system: str, value: str) -> list[str]:
    """The ids of the live resources of that type carrying the identifier."""
    response = await client.get(f"/fhir/{kind}", params={"identifier": f"{system}|{value}"})
    assert response.status_code == 200, response.text
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


def assert_duplicate(response: httpx.Response, system: str, value: str, hidden: str) -> None:
    """409 `duplicate`, naming the identifier and not the resource that carries it."""
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert issue["code"] == "duplicate"
    assert f"{system}|{value}" in issue["diagnostics"]
    assert hidden not in response.text


@pytest.mark.parametrize(
    ("make", "system"),
    [(lambda v: make_practitioner(v), RPPS), (organization, IDNST), (site, ODS_SITE)],
    ids=["Practitioner-RPPS", "Organization-FINESS", "Location-ODS-site"],
)
async def test_a_second_resource_with_the_same_identifier_is_refused(
    client: httpx.AsyncClient, make: Any, system: str
) -> None:
    first = await create(client, make("810000000501"))
    response = await post(client, make("810000000501"))
    assert_duplicate(response, system, "810000000501", first["id"])
    kind = first["resourceType"]
    assert await carrying(client, kind, system, "810000000501") == [first["id"]]
    assert len((await client.get(f"/fhir/{kind}/_history")).json()["entry"]) == 1


async def test_a_transaction_carrying_a_taken_identifier_is_refused_whole(
    client: httpx.AsyncClient,
) -> None:
    first = await create(client, make_practitioner("810000000502"))
    patient = make_patient(family="Innocent")
    response = await transaction(
        client, posting(patient), posting(make_practitioner("810000000502", "Autre"))
    )
    assert_duplicate(response, RPPS, "810000000502", first["id"])
    assert (await client.get("/fhir/Patient", params={"family": "Innocent"})).json()["total"] == 0
    assert await carrying(client, "Practitioner", RPPS, "810000000502") == [first["id"]]


async def test_two_entries_of_one_transaction_with_one_identifier_are_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await transaction(
        client,
        posting(make_practitioner("810000000503", "Un")),
        posting(make_practitioner("810000000503", "Deux")),
    )
    assert response.status_code == 409, response.text
    assert response.json()["issue"][0]["code"] == "duplicate"
    assert await carrying(client, "Practitioner", RPPS, "810000000503") == []
    assert (await client.get("/fhir/Practitioner")).json()["total"] == 0


async def test_an_update_giving_a_taken_identifier_is_refused(client: httpx.AsyncClient) -> None:
    taken = await create(client, make_practitioner("810000000504"))
    other = await create(client, without_identifier(make_practitioner(family="Autre")))
    url = f"/fhir/{ref(other)}"
    value = [{"system": RPPS, "value": "810000000504"}]
    put = await client.put(url, json={**other, "identifier": value}, headers=FHIR_JSON)
    assert_duplicate(put, RPPS, "810000000504", taken["id"])
    patch = await client.patch(
        url, json=[{"op": "add", "path": "/identifier", "value": value}], headers=PATCH_JSON
    )
    assert_duplicate(patch, RPPS, "810000000504", taken["id"])
    assert (await client.get(url)).json()["meta"]["versionId"] == "1"
    assert await carrying(client, "Practitioner", RPPS, "810000000504") == [taken["id"]]


async def test_a_resource_keeps_its_own_identifier_on_update(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner("810000000505"))
    url = f"/fhir/{ref(practitioner)}"
    renamed = {**practitioner, "name": [{"family": "Martin-Roy"}]}
    assert (await client.put(url, json=renamed, headers=FHIR_JSON)).status_code == 200
    patch = [{"op": "replace", "path": "/active", "value": False}]
    assert (await client.patch(url, json=patch, headers=PATCH_JSON)).status_code == 200
    moved = [*practitioner["identifier"], {"system": RPPS, "value": "810000000506"}]
    grown = {**renamed, "identifier": moved}
    assert (await client.put(url, json=grown, headers=FHIR_JSON)).status_code == 200
    assert await carrying(client, "Practitioner", RPPS, "810000000506") == [practitioner["id"]]


async def test_deleting_a_resource_frees_its_identifier(client: httpx.AsyncClient) -> None:
    first = await create(client, make_practitioner("810000000507"))
    assert (await client.delete(f"/fhir/{ref(first)}")).status_code == 204
    second = await create(client, make_practitioner("810000000507", "Successeur"))
    assert await carrying(client, "Practitioner", RPPS, "810000000507") == [second["id"]]


async def test_an_update_dropping_the_identifier_frees_it(client: httpx.AsyncClient) -> None:
    first = await create(client, make_practitioner("810000000508"))
    url = f"/fhir/{ref(first)}"
    dropped = without_identifier(first)
    assert (await client.put(url, json=dropped, headers=FHIR_JSON)).status_code == 200
    await create(client, make_practitioner("810000000508", "Successeur"))


async def test_a_transaction_may_move_an_identifier(client: httpx.AsyncClient) -> None:
    """Its DELETE runs before its POST, as FHIR orders a transaction's entries."""
    first = await create(client, make_practitioner("810000000509"))
    response = await transaction(
        client,
        posting(make_practitioner("810000000509", "Successeur")),
        {"request": {"method": "DELETE", "url": ref(first)}},
    )
    assert response.status_code == 200, response.text
    (now,) = await carrying(client, "Practitioner", RPPS, "810000000509")
    assert now != first["id"]


async def test_identifiers_of_other_systems_and_types_may_repeat(
    client: httpx.AsyncClient,
) -> None:
    internal = {"system": "https://editeur.example/agenda", "value": "42"}
    for family in ("Un", "Deux"):
        await create(client, {**make_practitioner(family=family), "identifier": [internal]})
    # one FINESS on an Organization and on a Location: unique within each type only
    await create(client, organization("1750000001"))
    place = {
        "resourceType": "Location",
        "name": "Site",
        "identifier": [{"system": IDNST, "value": "1750000001"}],
    }
    await create(client, place)
    # roles are about a practitioner: several may carry their practitioner's number
    role = {
        "resourceType": "PractitionerRole",
        "identifier": [{"system": RPPS, "value": "810000000510"}],
    }
    await create(client, role)
    await create(client, role)
    # patients are each app's own records: one person may be known to two of them
    ins = {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "287037512345678"}
    await create(client, {**make_patient(), "identifier": [ins]})
    await create(client, {**make_patient(), "identifier": [ins]})


async def test_a_conditional_create_still_returns_the_existing_one(
    client: httpx.AsyncClient,
) -> None:
    first = await create(client, make_practitioner("810000000511"))
    condition = f"identifier={RPPS}|810000000511"
    again = await post(client, make_practitioner("810000000511"), **{"If-None-Exist": condition})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]


async def test_concurrent_creates_of_one_identifier_make_one_resource(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    skip_on_test_mongodb(settings)
    responses = await asyncio.gather(
        *(post(client, make_practitioner("810000000512", f"W{w}")) for w in range(10))
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({201: 1, 409: 9}), statuses
    (winner,) = [r.json()["id"] for r in responses if r.status_code == 201]
    assert await carrying(client, "Practitioner", RPPS, "810000000512") == [winner]


def test_the_systems_are_a_setting() -> None:
    assert make_policy(Settings()).national_identifier_systems == frozenset(DEFAULT_SYSTEMS)
    env = {"CRENEAU_NATIONAL_IDENTIFIER_SYSTEMS": " urn:example:a, urn:example:b ,"}
    settings = Settings.from_env(env)
    assert make_policy(settings).national_identifier_systems == {"urn:example:a", "urn:example:b"}
    assert Settings.from_env(settings.to_env()) == settings
    off = Settings.from_env({"CRENEAU_NATIONAL_IDENTIFIER_SYSTEMS": ""})
    assert make_policy(off).national_identifier_systems == frozenset()
