"""Every error is an OperationOutcome with the right status, bad input changes nothing, and no
input, however malformed, gets a 500."""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from server.fhir import conformance
from server.fhir.resources import SERVED_TYPES
from server.fhir.searchparams import registry
from tests.factories import (
    FHIR_JSON,
    create,
    make_patient,
    make_practitioner,
    make_schedule,
    make_slot,
    ref,
)

LIMIT = 64 * 1024  # max_body_bytes in the test settings


def assert_outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["severity"] in ("error", "fatal") for i in body["issue"])
    assert "Traceback" not in response.text
    return body


async def history_size(client: httpx.AsyncClient) -> int:
    response = await client.get("/fhir/_history?_count=1000")
    assert response.status_code == 200
    return len(response.json().get("entry", []))


async def test_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    body = assert_outcome(await client.get("/fhir/Patient/nobody"), 404)
    assert body["issue"][0]["code"] == "not-found"
    assert_outcome(await client.get("/fhir/Patient/nobody/_history"), 404)
    assert_outcome(await client.get("/fhir/Patient/nobody/_history/1"), 404)
    patient = await create(client, make_patient())
    assert_outcome(await client.get(f"/fhir/Patient/{patient['id']}/_history/2"), 404)
    assert_outcome(await client.get(f"/fhir/Patient/{patient['id']}/_history/x"), 404)
    patch = await client.patch(
        "/fhir/Patient/nobody", json=[], headers={"Content-Type": "application/json-patch+json"}
    )
    assert_outcome(patch, 404)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/fhir/Unicorn"),
        ("GET", "/fhir/Unicorn/1"),
        ("POST", "/fhir/Unicorn"),
        ("PUT", "/fhir/Unicorn/1"),
        ("DELETE", "/fhir/Unicorn/1"),
        ("GET", "/fhir/Unicorn/_history"),
        ("GET", "/fhir/patient/1"),
        ("GET", "/fhir/Observation"),
        ("GET", "/nowhere"),
    ],
)
async def test_unknown_type_or_path_is_404(
    client: httpx.AsyncClient, method: str, url: str
) -> None:
    body = {"resourceType": "Unicorn", "id": "1"} if method in ("POST", "PUT") else None
    response = await client.request(method, url, json=body, headers=FHIR_JSON)
    assert_outcome(response, 404)
    assert await history_size(client) == 0


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("DELETE", "/fhir/metadata"),
        ("POST", "/fhir/metadata"),
        ("PUT", "/fhir/metadata"),
        ("PATCH", "/fhir/Patient"),
        ("PATCH", "/fhir"),
        ("PUT", "/fhir/Patient/_history"),
        ("DELETE", "/fhir/_history"),
        ("POST", "/fhir/Patient/1/_history"),
    ],
)
async def test_unsupported_method_is_405(client: httpx.AsyncClient, method: str, url: str) -> None:
    response = await client.request(method, url, json=make_patient(), headers=FHIR_JSON)
    assert_outcome(response, 405)
    assert await history_size(client) == 0


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({}, {"Accept": "application/fhir+xml"}),
        ({}, {"Accept": "application/xml, text/xml"}),
        ({}, {"Accept": "text/html"}),
        ({"_format": "xml"}, {}),
        ({"_format": "application/fhir+xml"}, {}),
        ({"_format": "xml"}, {"Accept": "application/fhir+json"}),
    ],
)
async def test_xml_or_other_format_is_406(
    client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str]
) -> None:
    for url in ("/fhir/metadata", "/fhir/Patient", "/fhir/Patient/x"):
        assert_outcome(await client.get(url, params=params, headers=headers), 406)


async def test_json_formats_are_served(client: httpx.AsyncClient) -> None:
    for params, headers in (
        ({"_format": "json"}, {}),
        ({"_format": "application/fhir+json"}, {}),
        ({}, {"Accept": "application/json"}),
        ({}, {"Accept": "application/fhir+json; fhirVersion=4.3"}),
        ({}, {"Accept": "application/fhir+xml;q=0.9, */*;q=0.1"}),
    ):
        assert (
            await client.get("/fhir/metadata", params=params, headers=headers)
        ).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/fhir+xml",
        "application/xml",
        "application/x-www-form-urlencoded",
        None,
    ],
)
async def test_non_json_body_is_415(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    xml = b'<Patient xmlns="http://hl7.org/fhir"><gender value="female"/></Patient>'
    assert_outcome(await client.post("/fhir/Patient", content=xml, headers=headers), 415)
    text = json.dumps(make_patient()).encode()
    assert_outcome(await client.put("/fhir/Patient/p1", content=text, headers=headers), 415)
    assert await history_size(client) == 0


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    big = {**make_patient(), "name": [{"family": "x" * LIMIT}]}
    assert_outcome(await client.post("/fhir/Patient", json=big, headers=FHIR_JSON), 413)

    async def chunks() -> Any:  # no Content-Length: the limit holds on the stream too
        raw = json.dumps(big).encode()
        for start in range(0, len(raw), 4096):
            yield raw[start : start + 4096]

    streamed = await client.put("/fhir/Patient/p1", content=chunks(), headers=FHIR_JSON)
    assert_outcome(streamed, 413)
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": big, "request": {"method": "POST", "url": "Patient"}}],
    }
    assert_outcome(await client.post("/fhir", json=bundle, headers=FHIR_JSON), 413)
    assert await history_size(client) == 0
    fits = {**make_patient(), "name": [{"family": "x" * (LIMIT - 1024)}]}
    assert (await client.post("/fhir/Patient", json=fits, headers=FHIR_JSON)).status_code == 201


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(depth):
        node = {"url": "http://example.org/nested", "extension": [node]}
    return node


MALFORMED: list[tuple[str, bytes]] = [
    ("truncated", b'{"resourceType": "Patient", "gender": '),
    ("trailing-comma", b'{"resourceType": "Patient",}'),
    ("single-quotes", b"{'resourceType': 'Patient'}"),
    ("two-documents", b'{"resourceType": "Patient"} {"resourceType": "Patient"}'),
    ("empty", b""),
    ("nan", b'{"resourceType": "Patient", "multipleBirthInteger": NaN}'),
    ("latin-1", '{"resourceType": "Patient", "name": [{"family": "Hélène"}]}'.encode("latin-1")),
    ("lone-surrogate", b'{"resourceType": "Patient", "name": [{"family": "\xed\xa0\x80"}]}'),
    ("bom-utf16", '{"resourceType": "Patient"}'.encode("utf-16")),
    ("deep-200", json.dumps({**make_patient(), "extension": [nested(200)]}).encode()),
    ("deep-arrays", b'{"resourceType": "Patient", "x": ' + b"[" * 200 + b"]" * 200 + b"}"),
    ("dollar-where", b'{"resourceType": "Patient", "$where": "sleep(1000)"}'),
    ("dollar-ne-nested", b'{"resourceType": "Patient", "name": [{"family": {"$ne": null}}]}'),
    (
        "dollar-in-extension",
        json.dumps(
            {
                **make_patient(),
                "extension": [{"url": "http://e.org/x", "valueString": "a", "$set": {"id": "z"}}],
            }
        ).encode(),
    ),
    ("dotted-key", b'{"resourceType": "Patient", "name.family": "Durand"}'),
    (
        "dotted-deep",
        json.dumps(
            {
                **make_patient(),
                "contained": [{"resourceType": "Patient", "id": "c", "meta.versionId": "9"}],
            }
        ).encode(),
    ),
    ("nul-key", b'{"resourceType": "Patient", "a\\u0000b": 1}'),
]


@pytest.mark.parametrize("raw", [raw for _, raw in MALFORMED], ids=[n for n, _ in MALFORMED])
async def test_malformed_body_is_400_and_changes_nothing(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    patient = await create(client, make_patient())
    before = await history_size(client)
    url = f"/fhir/Patient/{patient['id']}"
    assert_outcome(await client.post("/fhir/Patient", content=raw, headers=FHIR_JSON), 400)
    assert_outcome(await client.put(url, content=raw, headers=FHIR_JSON), 400)
    assert_outcome(await client.post("/fhir", content=raw, headers=FHIR_JSON), 400)
    assert await history_size(client) == before
    assert (await client.get(url)).json() == patient


async def test_operator_keys_inside_a_bundle_change_nothing(client: httpx.AsyncClient) -> None:
    for kind in ("transaction", "batch"):
        bundle = {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [
                {"resource": make_patient(), "request": {"method": "POST", "url": "Patient"}},
                {
                    "resource": {**make_patient(), "$where": "1"},
                    "request": {"method": "POST", "url": "Patient"},
                },
            ],
        }
        assert_outcome(await client.post("/fhir", json=bundle, headers=FHIR_JSON), 400)
    assert await history_size(client) == 0


async def test_patch_cannot_smuggle_operator_keys(client: httpx.AsyncClient) -> None:
    patient = await create(client, make_patient())
    url = f"/fhir/Patient/{patient['id']}"
    for operations in (
        [{"op": "add", "path": "/$where", "value": "1"}],
        [{"op": "add", "path": "/name/0/a.b", "value": "1"}],
        [{"op": "add", "path": "/name/0/family", "value": {"$ne": None}}],
    ):
        response = await client.patch(
            url, json=operations, headers={"Content-Type": "application/json-patch+json"}
        )
        assert response.status_code in (400, 422), response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(url)).json() == patient


INJECTIONS = [
    'name={"$ne": null}',
    "name[$ne]=x",
    "[$where]=1",
    "$where=1",
    "name[$regex]=.*",
    "family[$gt]=",
    "_id[$ne]=x",
    '_id={"$gt": ""}',
    "identifier=%7C%7B%22%24ne%22%3A1%7D",
    "name=%24ne",
    "name.family=Durand",
    "gender:not=female&gender:not=male&$or=1",
    'birthdate=gt{"$ne":0}',
    "_has:$where:x:y=1",
    "_has:Patient:link:$where=1",
    'gender={"$in": ["female", "male"]}',
    'gender=female,{"$exists":true}&gender=male',
]
# Result parameters, not filters: they may be refused or ignored, never obeyed as operators.
SHAPING = [
    "_sort=$natural",
    "_sort=-$where",
    '_count={"$gt":0}',
    "_elements=$where",
    "_include=Patient:$where",
    "_revinclude=$where:x",
    '_summary={"$ne":1}',
    "_total=$where",
    '_cursor={"$gt":0}',
]


@pytest.mark.parametrize("query", INJECTIONS)
async def test_operator_like_search_values_never_match_all(
    client: httpx.AsyncClient, query: str
) -> None:
    await create(client, make_patient())
    await create(client, make_patient(family="Bernard", given="Yves"))
    for headers in ({}, {"Prefer": "handling=strict"}):
        response = await client.get(f"/fhir/Patient?{query}", headers=headers)
        assert response.status_code in (200, 400), response.text
        body = response.json()
        if response.status_code == 400:
            assert body["resourceType"] == "OperationOutcome"
            continue
        assert body["resourceType"] == "Bundle"
        matches = [e for e in body.get("entry", []) if e["search"]["mode"] == "match"]
        ignored = [e for e in body.get("entry", []) if e["search"]["mode"] == "outcome"]
        assert len(matches) == 0 or ignored, f"{query} matched everything: {body}"


@pytest.mark.parametrize("query", SHAPING)
async def test_operator_like_result_parameters_are_harmless(
    client: httpx.AsyncClient, query: str
) -> None:
    patient = await create(client, make_patient())
    for headers in ({}, {"Prefer": "handling=strict"}):
        response = await client.get(f"/fhir/Patient?{query}", headers=headers)
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            matches = [
                e["resource"]
                for e in response.json().get("entry", [])
                if e["search"]["mode"] == "match"
            ]
            assert [m["id"] for m in matches] == [patient["id"]]
            assert all("$where" not in json.dumps(m) for m in matches)
        else:
            assert response.json()["resourceType"] == "OperationOutcome"


async def test_metadata_lists_every_served_type_with_its_search_parameters(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.3.0" and statement["kind"] == "instance"
    assert "application/fhir+json" in statement["format"]
    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    assert {i["code"] for i in rest["interaction"]} >= {"transaction", "batch"}
    by_type = {r["type"]: r for r in rest["resource"] if r["type"] not in conformance.SERVED}
    assert set(by_type) == set(SERVED_TYPES)
    for resource_type, resource in by_type.items():
        names = {p["name"] for p in resource["searchParam"]}
        assert names == set(registry().of(resource_type)), resource_type
        writes = (
            {"update", "delete"} if resource_type not in ("AuditEvent", "Provenance") else set()
        )
        assert {i["code"] for i in resource["interaction"]} >= {
            "read",
            "vread",
            "create",
            "search-type",
            "history-instance",
            *writes,
        }
    slot_params = {p["name"]: p["type"] for p in by_type["Slot"]["searchParam"]}
    assert slot_params["schedule"] == "reference" and slot_params["start"] == "date"
    assert {"actor", "active", "date"} <= {p["name"] for p in by_type["Schedule"]["searchParam"]}
    assert {"slot", "status", "date", "patient"} <= {
        p["name"] for p in by_type["Appointment"]["searchParam"]
    }


async def test_every_search_parameter_in_metadata_is_accepted(client: httpx.AsyncClient) -> None:
    """The statement is generated from what is implemented: a strict search on each of its
    parameters is not refused as unknown."""
    statement = (await client.get("/fhir/metadata")).json()
    for resource in statement["rest"][0]["resource"][:6]:
        for param in resource["searchParam"]:
            value = {
                "date": "ge2020-01-01",
                "number": "1",
                "quantity": "1",
                "reference": f"{resource['type']}/x",
                "token": "x",
                "string": "x",
                "uri": "http://x.org",
                "composite": "x$y",
                "special": "x",
            }[param["type"]]
            response = await client.get(
                f"/fhir/{resource['type']}",
                params={param["name"]: value},
                headers={"Prefer": "handling=strict"},
            )
            assert response.status_code in (200, 400), (resource["type"], param, response.text)
            if response.status_code == 400:
                diagnostics = response.json()["issue"][0].get("diagnostics", "")
                assert "unknown" not in diagnostics.lower(), (resource["type"], param)


# "Never a 500": malformed inputs of every kind.

SLOT_FIELDS = (
    "schedule",
    "status",
    "start",
    "end",
    "overbooked",
    "comment",
    "serviceType",
    "identifier",
    "meta",
    "text",
    "id",
    "specialty",
    "appointmentType",
)
WRONG_VALUES: list[Any] = [
    None,
    0,
    -1,
    1e308,
    10**40,
    True,
    "",
    "x" * 300,
    [],
    {},
    [None],
    {"reference": 5},
    "2026-13-45T99:99:99Z",
    "\u0000",
    "\ud7ff\uffff",
]


def slot_variants(schedule: str) -> list[dict[str, Any]]:
    rng = random.Random(1234)
    slot = make_slot(schedule)
    return [{**slot, field: rng.choice(WRONG_VALUES)} for field in SLOT_FIELDS] + [
        {**slot, field: value}
        for field, value in (
            ("start", 20260101),
            ("end", ["2026-01-01T10:00:00Z"]),
            ("status", ["free"]),
            ("schedule", "Schedule/x"),
            ("schedule", [{"reference": schedule}]),
            ("overbooked", "true"),
            ("start", "2026-01-01T10:00:00"),
            ("start", "2026-01-01"),
            ("_start", {"extension": [{"url": "x"}]}),
            ("resourceType", 7),
            ("start", "0000-01-01T00:00:00Z"),
            ("end", "9999-12-31T23:59:59.9999999999Z"),
        )
    ]


async def test_never_a_500(client: httpx.AsyncClient) -> None:
    practitioner = await create(client, make_practitioner())
    schedule = ref(await create(client, make_schedule(ref(practitioner))))
    rng = random.Random(42)
    raw_bodies = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(8)
    ] + [
        b"1" * 5000,
        b"-" + b"9" * 400,
        b"1e999999",
        b'"just a string"',
        b"null",
        b"[]",
        b"[" * 47 + b"]" * 47,
        b'{"resourceType": null}',
        b'{"resourceType": ["Slot"]}',
        b'{"resourceType": "Slot", "start": 1e400}',
        '{"résourceType": "Slot"}'.encode(),
        b'{"resourceType": "Slot", "id": 12}',
        b'{"resourceType": "Slot", "id": "\\u00e9"}',
    ]
    statuses: list[tuple[str, int]] = []
    for raw in raw_bodies:
        response = await client.post("/fhir/Slot", content=raw, headers=FHIR_JSON)
        statuses.append((repr(raw[:40]), response.status_code))
    for variant in slot_variants(schedule):
        response = await client.post("/fhir/Slot", json=variant, headers=FHIR_JSON)
        statuses.append((json.dumps(variant)[:120], response.status_code))
        response = await client.put(
            "/fhir/Slot/s1", json={**variant, "id": "s1"}, headers=FHIR_JSON
        )
        statuses.append(("PUT " + json.dumps(variant)[:120], response.status_code))
    for url in (
        "/fhir/Slot?start=ge" + "9" * 400,
        "/fhir/Slot?_count=" + "9" * 400,
        "/fhir/Slot?_count=-1",
        "/fhir/Slot?start=2026-02-30",
        "/fhir/Slot?_cursor=!!",
        "/fhir/Slot/%00",
        "/fhir/Slot?schedule=" + "%ff" * 10,
        "/fhir/Slot?status=\u2603",
        "/fhir/_history?_since=yesterday",
        "/fhir/Slot/s1/_history/" + "9" * 40,
        "/fhir/Slot?_sort=" + "," * 50,
        "/fhir/Slot?_include=*:*",
        "/fhir/Slot?schedule:Schedule.actor:Practitioner.name=" + "x" * 3000,
        "/fhir/Slot/s1/_history/\u00b2",
        "/fhir/Slot?_count=\u00b2",
        "/fhir/_history?_count=\u00b2",
    ):
        statuses.append((url[:80], (await client.get(url)).status_code))
    for if_match in (b'W/"\xb2"', b'W/"' + b"9" * 40 + b'"', b"*", b'"', b"\xff\xfe"):
        response = await client.put(
            "/fhir/Slot/s1",
            json={**make_slot(schedule), "id": "s1"},
            headers={**FHIR_JSON, "If-Match": if_match},
        )
        statuses.append((f"If-Match {if_match!r}", response.status_code))
    assert len(statuses) >= 40
    server_errors = [(what, status) for what, status in statuses if status >= 500]
    assert server_errors == []
