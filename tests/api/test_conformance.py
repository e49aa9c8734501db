"""Conformance resources served read-only and searchable by url, name and version; the
CapabilityStatement's instantiates, implementationGuide and supportedProfile; the SAS IG's
`service-type-reference` search parameter on Slots."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from fhir.resources.R4B.bundle import Bundle

from server.api.metadata import instantiates
from server.fhir import conformance, operations
from server.fhir.resources import PROFILES
from tests.conftest import BASE
from tests.factories import FHIR_JSON, create, make_practitioner, make_schedule, make_slot, ref

SAS = "https://interop.esante.gouv.fr/ig/fhir/sas"
SAS_SLOT = f"{SAS}/StructureDefinition/sas-cpts-slot-aggregator"
SERVICE_TYPE = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Slot.serviceType"
AGENDA = [
    f"{SAS}/CapabilityStatement/SAS-GestionnaireAgenda-{role}"
    for role in ("CPTS", "PsIndiv", "RDVSOS", "RDVpsindiv", "SOS")
]
OURS = [
    json.loads(path.read_text())
    for pattern in ("StructureDefinition-*.json", "SearchParameter-*.json")
    for path in sorted(PROFILES.glob(pattern))
]


async def search(client: httpx.AsyncClient, path: str, **headers: str) -> dict[str, Any]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    found: dict[str, Any] = response.json()
    Bundle.model_validate(found)
    assert found["type"] == "searchset"
    return found


def ids(found: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in found.get("entry", []) if e["search"]["mode"] == "match"]


async def test_every_operation_definition_of_ours_resolves_by_url(
    client: httpx.AsyncClient,
) -> None:
    for definition in operations.definitions():
        found = await search(client, f"/fhir/OperationDefinition?url={definition['url']}")
        assert found["total"] == 1, definition["url"]
        [entry] = found["entry"]
        assert entry["resource"] == definition
        assert entry["fullUrl"] == f"{BASE}/OperationDefinition/{definition['id']}"


async def test_every_extension_and_search_parameter_of_ours_resolves_by_url(
    client: httpx.AsyncClient,
) -> None:
    for resource in OURS:
        kind = resource["resourceType"]
        found = await search(client, f"/fhir/{kind}?url={resource['url']}")
        assert [e["resource"] for e in found["entry"]] == [resource], resource["url"]


async def test_a_search_has_a_self_link_and_full_urls(client: httpx.AsyncClient) -> None:
    found = await search(client, f"/fhir/StructureDefinition?url={SAS_SLOT}")
    assert found["total"] == 1
    assert found["link"] == [
        {
            "relation": "self",
            "url": f"{BASE}/StructureDefinition?{urlencode({'url': SAS_SLOT})}",
        }
    ]
    [entry] = found["entry"]
    assert entry["fullUrl"] == f"{BASE}/StructureDefinition/sas-cpts-slot-aggregator"
    assert entry["resource"]["type"] == "Slot" and entry["search"] == {"mode": "match"}


async def test_search_by_name_version_and_type(client: httpx.AsyncClient) -> None:
    by_name = await search(client, "/fhir/StructureDefinition?name=frslot")  # starts with
    assert sorted(ids(by_name)) == [
        "FrSlotAgregateur",
        "sas-cpts-slot-aggregator",
        "sas-sos-slot-aggregator",
    ]
    exact = await search(client, "/fhir/StructureDefinition?name:exact=FrSlotAgregateur")
    assert ids(exact) == ["FrSlotAgregateur"]
    assert (await search(client, "/fhir/StructureDefinition?name:exact=frslotagregateur"))[
        "total"
    ] == 0
    contains = await search(client, "/fhir/StructureDefinition?name:contains=SLOTAGREGATEURCPTS")
    assert ids(contains) == ["sas-cpts-slot-aggregator"]
    slots = await search(client, "/fhir/StructureDefinition?type=Slot&version=1.1.0")
    assert sorted(ids(slots)) == [
        "FrSlotAgregateur",
        "sas-cpts-slot-aggregator",
        "sas-sos-slot-aggregator",
    ]
    either = await search(client, "/fhir/StructureDefinition?_id=hold-expires,booking-record")
    assert sorted(ids(either)) == ["booking-record", "hold-expires"]
    ours = await search(client, "/fhir/StructureDefinition?version=0.1.0&type=Extension")
    assert sorted(ids(ours)) == sorted(
        r["id"] for r in OURS if r["resourceType"] == "StructureDefinition"
    )
    on_slot = await search(client, "/fhir/SearchParameter?base=Slot&type=reference")
    assert "cptsslot-sp-servicetype" in ids(on_slot) and "Slot-schedule" in ids(on_slot)
    value_sets = await search(
        client, "/fhir/ValueSet?url=" + f"{SAS}/ValueSet/sas-cpts-valueset-typecreneau"
    )
    assert value_sets["total"] == 1
    guide = await search(
        client, f"/fhir/ImplementationGuide?url={SAS}/ImplementationGuide/ans.fhir.fr.sas"
    )
    assert ids(guide) == ["ans.fhir.fr.sas"]


async def test_a_canonical_with_its_version(client: httpx.AsyncClient) -> None:
    found = await search(client, f"/fhir/StructureDefinition?url={SAS_SLOT}|1.1.0")
    assert ids(found) == ["sas-cpts-slot-aggregator"]
    none = await search(client, f"/fhir/StructureDefinition?url={SAS_SLOT}|0.9.0")
    assert none["total"] == 0 and "entry" not in none


async def test_count_pages_and_summary_count(client: httpx.AsyncClient) -> None:
    total = (await search(client, "/fhir/SearchParameter?_summary=count"))["total"]
    assert total == len(conformance.load().of_type("SearchParameter")) > 200
    first = await search(client, "/fhir/SearchParameter?_count=100")
    assert first["total"] == total and len(ids(first)) == 100
    links = {link["relation"]: link["url"] for link in first["link"]}
    seen = ids(first)
    while "next" in links:
        page = await search(client, links["next"].removeprefix("http://test"))
        seen += ids(page)
        links = {link["relation"]: link["url"] for link in page["link"]}
    assert len(seen) == len(set(seen)) == total
    assert "previous" in links
    counted = await search(client, "/fhir/StructureDefinition?type=Slot&_summary=count")
    assert counted["total"] == 3 and "entry" not in counted


async def test_unknown_parameters_are_ignored_or_refused_when_strict(
    client: httpx.AsyncClient,
) -> None:
    found = await search(client, "/fhir/StructureDefinition?colour=blue&type=Slot")
    assert len(ids(found)) == 3
    [warning] = [e for e in found["entry"] if e["search"]["mode"] == "outcome"]
    assert "colour" in warning["resource"]["issue"][0]["diagnostics"]
    strict = await client.get(
        "/fhir/StructureDefinition?colour=blue", headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400 and strict.json()["resourceType"] == "OperationOutcome"
    modifier = await client.get("/fhir/StructureDefinition?url:below=http://sas.fr")
    assert modifier.status_code == 400
    assert (await client.get("/fhir/StructureDefinition?_count=many")).status_code == 400
    assert (await client.get("/fhir/StructureDefinition?_cursor=x")).status_code == 400


async def test_search_by_post(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/fhir/StructureDefinition/_search",
        content="type=Slot&name=FrSlotAgregateurC",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert ids(response.json()) == ["sas-cpts-slot-aggregator"]


async def test_read_a_conformance_resource(client: httpx.AsyncClient) -> None:
    response = await client.get("/fhir/StructureDefinition/sas-cpts-slot-aggregator")
    assert response.status_code == 200
    assert response.json() == conformance.load().by_url(SAS_SLOT)
    book = await client.get("/fhir/OperationDefinition/appointment-book")
    assert book.status_code == 200 and book.json() == operations.get("appointment-book")
    core = await client.get("/fhir/SearchParameter/Slot-start")
    assert core.status_code == 200 and core.json()["expression"] == "Slot.start"
    missing = await client.get("/fhir/ValueSet/no-such-value-set")
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"


@pytest.mark.parametrize("kind", conformance.SERVED)
async def test_conformance_resources_are_read_only(client: httpx.AsyncClient, kind: str) -> None:
    loaded = conformance.load().of_type(kind)  # none for CodeSystem: the SAS IG has none
    existing = loaded[0] if loaded else {"resourceType": kind, "id": "none", "status": "draft"}
    for method, path in (
        ("POST", f"/fhir/{kind}"),
        ("PUT", f"/fhir/{kind}"),
        ("DELETE", f"/fhir/{kind}"),
        ("PUT", f"/fhir/{kind}/{existing['id']}"),
        ("PATCH", f"/fhir/{kind}/{existing['id']}"),
        ("DELETE", f"/fhir/{kind}/{existing['id']}"),
    ):
        response = await client.request(method, path, json=existing, headers=FHIR_JSON)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == "GET, HEAD"
        assert response.json()["resourceType"] == "OperationOutcome"
    read = await client.get(f"/fhir/{kind}/{existing['id']}")
    assert read.status_code == (200 if loaded else 404)


async def test_they_need_no_token_like_the_metadata(app: FastAPI) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as anonymous:
        found = await anonymous.get(f"/fhir/StructureDefinition?url={SAS_SLOT}")
        assert found.status_code == 200 and found.json()["total"] == 1
        assert (await anonymous.get("/fhir/Slot")).status_code == 401  # stored ones do


async def test_a_booking_app_reads_them_without_special_scopes(app_client: Any) -> None:
    booking_app = await app_client("booking-app", scope="system/Slot.rs")
    found = await booking_app.get(
        "/fhir/OperationDefinition?url=https://fhir.creneau.org/OperationDefinition/appointment-book"
    )
    assert found.status_code == 200 and found.json()["total"] == 1


async def statement(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


async def test_metadata_instantiates_the_sas_agenda_manager_statements(
    client: httpx.AsyncClient,
) -> None:
    found = await statement(client)
    assert set(AGENDA) <= set(found["instantiates"])
    assert not any("Consommateur" in url for url in found["instantiates"])  # client roles
    for url in found["instantiates"]:
        assert conformance.load().by_url(url)["kind"] == "requirements"
    assert found["implementationGuide"] == [f"{SAS}/ImplementationGuide/ans.fhir.fr.sas"]


async def test_instantiates_lists_only_what_the_statement_meets(client: httpx.AsyncClient) -> None:
    found = await statement(client)
    without = copy.deepcopy(found)
    [slot] = [r for r in without["rest"][0]["resource"] if r["type"] == "Slot"]
    slot["searchInclude"].remove("Slot:service-type-reference")
    assert f"{SAS}/CapabilityStatement/SAS-GestionnaireAgenda-CPTS" not in instantiates(
        without, conformance.load()
    )
    assert f"{SAS}/CapabilityStatement/SAS-GestionnaireAgenda-PsIndiv" in instantiates(
        without, conformance.load()
    )
    [appointment] = [r for r in without["rest"][0]["resource"] if r["type"] == "Appointment"]
    appointment["interaction"] = [i for i in appointment["interaction"] if i["code"] != "update"]
    assert f"{SAS}/CapabilityStatement/SAS-GestionnaireAgenda-RDVSOS" not in instantiates(
        without, conformance.load()
    )


async def test_metadata_lists_the_profiles_and_the_conformance_types(
    client: httpx.AsyncClient,
) -> None:
    by_type = {r["type"]: r for r in (await statement(client))["rest"][0]["resource"]}
    assert SAS_SLOT in by_type["Slot"]["supportedProfile"]
    assert (
        "http://sas.fr/fhir/StructureDefinition/FrSlotAgregateur"
        in by_type["Slot"]["supportedProfile"]
    )
    assert "supportedProfile" not in by_type["Patient"]
    for kind in conformance.SERVED:
        assert {i["code"] for i in by_type[kind]["interaction"]} == {"read", "search-type"}
        assert {"url", "name", "version"} <= {p["name"] for p in by_type[kind]["searchParam"]}
    slot_params = {p["name"]: p["definition"] for p in by_type["Slot"]["searchParam"]}
    assert slot_params["service-type-reference"] == f"{SAS}/SearchParameter/cptsslot-sp-servicetype"
    assert slot_params["start"] == "http://hl7.org/fhir/SearchParameter/Slot-start"
    assert "Slot:service-type-reference" in by_type["Slot"]["searchInclude"]


async def test_slots_are_found_and_included_by_their_service_reference(
    client: httpx.AsyncClient,
) -> None:
    practitioner = await create(client, make_practitioner())
    schedule = await create(client, make_schedule(ref(practitioner)))
    service = await create(
        client, {"resourceType": "HealthcareService", "active": True, "name": "CPTS"}
    )
    typed = {"extension": [{"url": SERVICE_TYPE, "valueReference": {"reference": ref(service)}}]}
    typed["coding"] = [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    ]
    slot = await create(client, make_slot(ref(schedule), serviceType=[typed]))
    await create(client, make_slot(ref(schedule)))  # no service
    found = await search(client, f"/fhir/Slot?service-type-reference={ref(service)}")
    assert ids(found) == [slot["id"]]
    assert (await search(client, "/fhir/Slot?service-type-reference=HealthcareService/x"))[
        "total"
    ] == 0
    included = await search(
        client, f"/fhir/Slot?schedule={ref(schedule)}&_include=Slot:service-type-reference"
    )
    assert [e["resource"]["id"] for e in included["entry"] if e["search"]["mode"] == "include"] == [
        service["id"]
    ]
