"""The SAS aggregator's queries, as the ANS test kit sends them, on the SAS-shaped demo data.

The kit (ansforge/interop-outil-fhir-sas-test-kit, `lib/sas_test_kit/aggregation/`) asks for a
practitioner's (or two practitioners') free slots of the next three days by RPPS, with no
`_count`, and checks the Bundle it gets: one Practitioner, PractitionerRole and Schedule per
practitioner and place, the place contained in the PractitionerRole, the references between
them, the RPPS format, future slots only with `start < end`, a booking URL in `comment`, the
slots' audience, service type and appointment type, `total` equal to the slots returned, and a
self link that repeats the query. Those rules are asserted here, on both stores.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from fixtures.demo import load_once
from server.app import create_app
from server.auth import clients
from server.config import Settings
from server.fhir import conformance
from server.fhir.profiles import profile_issues
from tests.conftest import BASE, COMMON

RPPS = "urn:oid:1.2.250.1.71.4.2.1"
MARTIN, BERNARD, NDIAYE = "810000000011", "810000000029", "810000000045"
SAS = "http://sas.fr/fhir/StructureDefinition"
CPTS_BUNDLE = (
    "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/sas-cpts-bundle-aggregator"
)
CPTS_SLOT = (
    "https://interop.esante.gouv.fr/ig/fhir/sas/StructureDefinition/sas-cpts-slot-aggregator"
)
TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


@pytest.fixture(scope="module", params=["sqlite", "mongo"])
async def sas_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    """One app per store for the module, the demo data loaded once (a week of it: the kit
    looks three days ahead); the tests only add what they need."""
    if request.param == "mongo":
        uri = request.getfixturevalue("mongodb_uri").replace("/?", f"/sas{uuid.uuid4().hex[:8]}?")
        settings = Settings(**COMMON, mongodb_uri=uri)  # type: ignore[arg-type]
    else:
        settings = Settings(**COMMON, data_dir=tmp_path_factory.mktemp("sas"))  # type: ignore[arg-type]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        await load_once(application.state.store, BASE, application.state.policy, days=7)
        yield application


async def registered(app: FastAPI, name: str, **kind: Any) -> httpx.AsyncClient:
    """An HTTP client of the app carrying a new client's token (`admin=True`, `scope=...`)."""
    found, _ = await clients.create(app.state.store, name=name, secret=True, **kind)
    token = await app.state.authority.issue(found)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    http.client_id = found.client_id  # type: ignore[attr-defined]
    return http


@pytest.fixture(scope="module")
async def client(sas_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The operator's admin client, as the aggregator's queries need no grant here."""
    http = await registered(sas_app, "operator", admin=True)
    yield http
    await http.aclose()


def window() -> tuple[str, str]:
    """The kit's bounds: from now to the end of the day after tomorrow (at most 72 hours).
    The demo has weekday slots only: from a Friday evening or a weekend, the window starts on
    the next Monday instead, so that there is something to find."""
    start = datetime.now(UTC)
    while start.weekday() >= 5 or (start.weekday() == 4 and start.hour >= 16):
        start = (start + timedelta(days=1)).replace(hour=0, minute=0, second=0)
    end = min(
        start + timedelta(hours=72),
        (start + timedelta(days=2)).replace(hour=23, minute=59, second=59),
    )
    return f"{start:%Y-%m-%dT%H:%M:%S}", f"{end:%Y-%m-%dT%H:%M:%S}"


def kit_query(rpps: list[str], *, cpts: bool = False, offset: str = "+00:00") -> str:
    """The query string exactly as the kit sends it; the offset's `+` left unencoded."""
    start, end = window()
    wanted = ",".join(f"{RPPS}|{r}" for r in rpps)
    includes = "_include=Slot:schedule&_include:iterate=Schedule:actor"
    if cpts:
        includes = (
            "_include=Slot:schedule&_include=Slot:service-type-reference"
            "&_include:iterate=Schedule:actor&_include:iterate=HealthcareService:organization"
        )
    return (
        f"/fhir/Slot?{includes}&schedule.actor:Practitioner.identifier={wanted}"
        f"&start=ge{start}.000{offset}&start=le{end}.000{offset}&status=free"
    )


async def aggregate(client: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await client.get(query)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle: dict[str, Any] = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert_meets(bundle, f"{SAS}/BundleAgregateur")
    return bundle


def assert_meets(resource: dict[str, Any], profile: str) -> None:
    """No error against the profile (a Bundle's: its entries against theirs, as the kit's
    validator checks them)."""
    definitions = conformance.load()
    definition = definitions.by_url(profile)
    assert definition is not None
    issues = profile_issues(resource, definition, definitions.by_url)
    errors = [(i.expression, i.diagnostics) for i in issues if i.severity == "error"]
    assert not errors


def with_profile(bundle: dict[str, Any], profile: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if profile in e["resource"].get("meta", {}).get("profile", [])
    ]


def slots_of(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return with_profile(bundle, f"{SAS}/FrSlotAgregateur") + with_profile(bundle, CPTS_SLOT)


def assert_slot_rules(bundle: dict[str, Any]) -> None:
    """The kit's rules on every Slot: future, ends after it starts, booking URL, audience,
    consultation type, appointment type, instants with milliseconds and an offset."""
    now = datetime.now(UTC)
    slots = slots_of(bundle)
    assert slots
    for slot in slots:
        assert slot["status"] == "free"
        assert INSTANT.match(slot["start"]) and INSTANT.match(slot["end"]), slot["start"]
        start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
        assert now <= start < end
        assert slot["comment"].startswith("https://")
        audience = [c for c in slot["meta"]["security"] if c["system"] == TYPE_CRENEAU]
        assert audience and {c["code"] for c in audience} <= {"PUBLIC", "PRO", "SNP", "CPTS"}
        consultation = [c for t in slot["serviceType"] for c in t.get("coding", [])]
        assert any(
            c["system"] == ACT_CODE and c["code"] in ("AMB", "VR", "HH") for c in consultation
        )
        kinds = slot["appointmentType"]["coding"]
        assert kinds[0]["system"] == V2_0276 and kinds[0]["code"] in ("ROUTINE", "WALKIN")
    assert bundle["total"] == len(slots)


def assert_practitioner_rules(bundle: dict[str, Any], rpps: str) -> None:
    """One practitioner at one place: its Practitioner, PractitionerRole (place contained)
    and Schedule, referring to one another."""
    [practitioner] = [
        p
        for p in with_profile(bundle, f"{SAS}/FrPractitionerAgregateur")
        if p["identifier"][0]["value"] == rpps
    ]
    [identifier] = practitioner["identifier"]
    assert identifier["system"] == RPPS and re.fullmatch(r"8\d{11}", identifier["value"])
    assert identifier["type"]["coding"][0]["code"] == "IDNPS"
    mine = f"Practitioner/{practitioner['id']}"
    [role] = [
        r
        for r in with_profile(bundle, f"{SAS}/FrPractitionerRoleExerciceAgregateur")
        if r["practitioner"]["reference"] == mine
    ]
    [place] = role["contained"]
    assert role["location"] == [{"reference": f"#{place['id']}"}]
    address = place["address"]
    assert address["line"] and address["city"] and re.fullmatch(r"\d{5}", address["postalCode"])
    assert role["organization"]["identifier"]["system"] == "urn:oid:1.2.250.1.71.4.2.2"
    [schedule] = [
        s
        for s in with_profile(bundle, f"{SAS}/FrScheduleAgregateur")
        if {"reference": mine} in s["actor"]
    ]
    assert {"reference": f"PractitionerRole/{role['id']}"} in schedule["actor"]
    for slot in slots_of(bundle):
        if slot["schedule"]["reference"] == f"Schedule/{schedule['id']}":
            break
    else:
        raise AssertionError(f"no slot of {rpps}'s Schedule")


def assert_self_link_is_the_query(bundle: dict[str, Any], query: str) -> None:
    """The kit compares the self link's parameters with its query's, both decoded as forms
    (its unencoded `+` is a space on both sides), values sorted."""
    [link] = [link["url"] for link in bundle["link"] if link["relation"] == "self"]

    def parameters(url: str) -> dict[str, list[str]]:
        return {k: sorted(v) for k, v in parse_qs(urlsplit(url).query).items()}

    assert parameters(link) == parameters(query)


async def test_one_practitioner_at_one_place(client: httpx.AsyncClient) -> None:
    query = kit_query([MARTIN])
    bundle = await aggregate(client, query)
    assert_practitioner_rules(bundle, MARTIN)
    assert len(with_profile(bundle, f"{SAS}/FrPractitionerAgregateur")) == 1
    assert len(with_profile(bundle, f"{SAS}/FrScheduleAgregateur")) == 1
    assert_slot_rules(bundle)
    assert_self_link_is_the_query(bundle, query)


async def test_two_practitioners_at_once(client: httpx.AsyncClient) -> None:
    bundle = await aggregate(client, kit_query([MARTIN, NDIAYE]))
    assert_practitioner_rules(bundle, MARTIN)
    assert_practitioner_rules(bundle, NDIAYE)
    assert_slot_rules(bundle)


async def test_a_practitioner_with_several_schedules(client: httpx.AsyncClient) -> None:
    """Dr Bernard consults and vaccinates: two Schedules, each naming his PractitionerRole."""
    bundle = await aggregate(client, kit_query([BERNARD], offset="+01:00"))
    schedules = with_profile(bundle, f"{SAS}/FrScheduleAgregateur")
    assert len(schedules) == 2
    assert_slot_rules(bundle)


async def test_the_cpts_variant_includes_the_service_and_its_organization(
    client: httpx.AsyncClient,
) -> None:
    bundle = await aggregate(client, kit_query([BERNARD], cpts=True, offset=""))
    assert_meets(bundle, CPTS_BUNDLE)
    cpts_slots = with_profile(bundle, CPTS_SLOT)
    services = [
        e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "HealthcareService"
    ]
    organizations = {
        f"Organization/{e['resource']['id']}"
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Organization"
    }
    [service] = services
    assert service["providedBy"]["reference"] in organizations
    for slot in cpts_slots:
        [reference] = [
            e["valueReference"]["reference"]
            for t in slot["serviceType"]
            for e in t.get("extension", [])
        ]
        assert reference == f"HealthcareService/{service['id']}"
        assert {"system": TYPE_CRENEAU, "code": "CPTS"} in slot["meta"]["security"]
    assert cpts_slots
    assert_slot_rules(bundle)


async def test_nothing_free_is_an_empty_bundle(client: httpx.AsyncClient) -> None:
    bundle = await aggregate(client, kit_query(["899999999999"]))
    assert bundle["total"] == 0 and not bundle.get("entry")


async def test_a_pro_slot_is_seen_only_by_an_app_acting_for_professionals(
    sas_app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Dr N'Diaye's slots are for PRO and SNP: an app her hospital lets discover sees none of
    them until the hospital's grant says it acts for regulators (SNP)."""
    hospital = (
        await client.get("/fhir/Organization?identifier=urn:oid:1.2.250.1.71.4.2.2|1690000002")
    ).json()
    owner = f"Organization/{hospital['entry'][0]['resource']['id']}"
    regulator = await registered(
        sas_app,
        "regulateur",
        scope="system/Slot.rs system/Schedule.rs system/Practitioner.rs system/PractitionerRole.rs",
    )

    async def grant(*audience: str) -> None:
        parts = [{"name": "client", "valueString": regulator.client_id}]
        parts.append({"name": "access", "valueCode": "discover"})
        parts += [{"name": "audience", "valueCode": a} for a in audience]
        body = {"resourceType": "Parameters", "parameter": parts}
        response = await client.post(f"/fhir/{owner}/$grant", json=body)
        assert response.status_code in (200, 201), response.text

    await grant()
    seen = await aggregate(regulator, kit_query([NDIAYE]))
    assert not slots_of(seen) and seen["total"] == 0
    await grant("SNP")
    seen = await aggregate(regulator, kit_query([NDIAYE]))
    assert slots_of(seen) and all(
        {"system": TYPE_CRENEAU, "code": "SNP"} in s["meta"]["security"] for s in slots_of(seen)
    )
    # her Lyon colleague's public slots were visible all along
    assert slots_of(await aggregate(regulator, kit_query(["810000000037"])))
    await regulator.aclose()


async def test_an_audience_outside_the_codes_is_refused(client: httpx.AsyncClient) -> None:
    hospital = (
        await client.get("/fhir/Organization?identifier=urn:oid:1.2.250.1.71.4.2.2|1690000002")
    ).json()
    owner = f"Organization/{hospital['entry'][0]['resource']['id']}"
    parts = [
        {"name": "client", "valueString": "*"},
        {"name": "access", "valueCode": "discover"},
        {"name": "audience", "valueCode": "PRO"},
    ]
    response = await client.post(
        f"/fhir/{owner}/$grant", json={"resourceType": "Parameters", "parameter": parts}
    )
    assert response.status_code == 400


REGULATOR = {
    "resourceType": "Practitioner",
    "id": "example-regulator-1",
    "identifier": [{"system": RPPS, "value": "810000009999"}],
    "name": [{"family": "REGUL", "given": ["Jeanne"]}],
}


async def test_the_regulator_account_flow_creates_then_updates_by_identifier(
    client: httpx.AsyncClient,
) -> None:
    """`PUT Practitioner?identifier=…` with the kit's body (an `id` nothing has): created with
    that id, then updated in place; an id that names another Practitioner is 409."""
    url = f"/fhir/Practitioner?identifier={RPPS}|810000009999"
    created = await client.put(url, json=REGULATOR)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "example-regulator-1"
    renamed = {**REGULATOR, "name": [{"family": "REGUL", "given": ["Jeanne", "Marie"]}]}
    updated = await client.put(url, json=renamed)
    assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
    other = {**REGULATOR, "identifier": [{"system": RPPS, "value": "810000009998"}]}
    taken = await client.put(f"/fhir/Practitioner?identifier={RPPS}|810000009998", json=other)
    assert taken.status_code == 409
    kept = (await client.get("/fhir/Practitioner/example-regulator-1")).json()
    assert kept["identifier"][0]["value"] == "810000009999"
