"""The open statistics (`/stats/appointments`) on a known data set, on both stores: the figures by
department, service type, vaccine and day; the cells below the threshold withheld everywhere
(a suppressed group reads "< 3" here, a group with some withheld cells is partial); CSV; no
token needed; bad inputs refused; no identifier in the output; the stat tags the server's own.

The threshold is 3 here (it is 10 by default), so that the data set stays small."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from server.config import Settings
from server.stats.stamping import PARIS
from tests.api.scheduling_setup import TOMORROW, VACCINE, add_slots, booking, open_practice
from tests.factories import (
    COMIRNATY,
    CONSULTATION,
    FHIR_JSON,
    appointment_in,
    create,
    fresh_rpps,
    make_delivery,
    make_practitioner,
    make_schedule,
    operate,
    ref,
)

THRESHOLD = 3
SUPPRESSED = f"< {THRESHOLD}"
D1 = TOMORROW.astimezone(PARIS).date()
D2 = D1 + timedelta(days=1)
GP = "http://terminology.hl7.org/CodeSystem/service-type|124"
IMMUNIZATION = "http://terminology.hl7.org/CodeSystem/service-type|57"
STAT_DEPARTMENT = "https://fhir.creneau.org/CodeSystem/stat-department"
WINDOW = {"from": D1.isoformat(), "to": D2.isoformat()}
ZERO = dict.fromkeys(
    [
        "booked",
        "cancelled",
        "noshow",
        "fulfilled",
        "doses-delivered",
        "doses-reserved",
        "doses-administered",
    ],
    0,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, stats_threshold=THRESHOLD)


@dataclass
class Known:
    identifiers: list[str]  # every id the data set's resources have


async def _book(client: httpx.AsyncClient, slot_id: str, patient: dict[str, Any]) -> dict:
    reply = await operate(client, "Appointment/$book", ("appt-resource", booking(slot_id, patient)))
    assert reply.status_code == 201, reply.text
    return appointment_in(reply)


async def _lyon(client: httpx.AsyncClient) -> tuple[dict[str, Any], list[str]]:
    """A practitioner in Lyon whose Schedule names only a PractitionerRole, the consultation
    place contained in it (as the SAS shape has it)."""
    practitioner = await create(client, make_practitioner(fresh_rpps(), family="Rousset"))
    place = {"resourceType": "Location", "id": "lieu", "address": {"postalCode": "69004"}}
    role = await create(
        client,
        {
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": ref(practitioner)},
            "contained": [place],
            "location": [{"reference": "#lieu"}],
        },
    )
    schedule = await create(client, make_schedule(ref(role), serviceType=[CONSULTATION]))
    return schedule, [practitioner["id"], role["id"], schedule["id"]]


@pytest.fixture
async def known(client: httpx.AsyncClient) -> Known:
    """Paris (75020), D1: 4 vaccinations booked, one then fulfilled; 2 consultations booked and
    a hold released; 20 doses delivered; one Immunization. Lyon (69004), D2: 4 consultations
    booked, one then cancelled."""
    paris = await open_practice(client, patients=1)
    patient = paris.patients[0]
    await create(client, {**make_delivery(paris.place, 20), "occurrenceDateTime": str(D1)})
    (vaccination,) = await add_slots(client, paris.vaccinations, 1, minutes=5, seats=4)
    booked = [await _book(client, vaccination, patient) for _ in range(4)]
    done = await client.put(
        f"/fhir/Appointment/{booked[0]['id']}",
        json={**booked[0], "status": "fulfilled"},
        headers=FHIR_JSON,
    )
    assert done.status_code == 200, done.text
    (consultation,) = await add_slots(client, paris.consultations, 1, seats=3)
    booked += [await _book(client, consultation, patient) for _ in range(2)]
    held = await operate(
        client, "Appointment/$hold", ("slot", {"reference": f"Slot/{consultation}"})
    )
    await operate(client, f"Appointment/{appointment_in(held)['id']}/$cancel")
    immunization = await create(
        client,
        {
            "resourceType": "Immunization",
            "status": "completed",
            "vaccineCode": {"coding": [COMIRNATY]},
            "patient": {"reference": ref(patient)},
            "occurrenceDateTime": f"{D1}T10:00:00+01:00",
            "location": {"reference": paris.place},
        },
    )
    lyon, lyon_ids = await _lyon(client)
    (slot,) = await add_slots(client, lyon, 1, first=TOMORROW + timedelta(days=1), seats=4)
    booked += [await _book(client, slot, patient) for _ in range(4)]
    cancelled = await operate(client, f"Appointment/{booked[-1]['id']}/$cancel")
    assert cancelled.status_code == 200, cancelled.text
    ids = [a["id"] for a in booked] + lyon_ids + [immunization["id"], patient["id"]]
    ids += [paris.practitioner["id"], paris.location["id"], paris.vaccinations["id"]]
    return Known(ids)


async def _figures(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/stats/appointments", params={**WINDOW, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def _groups(report: dict[str, Any], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Each group's figures, by its codes of `keys`."""
    found = {}
    for group in report["groups"]:
        figures = {k: v for k, v in group.items() if k not in keys}
        found[tuple(group[k] for k in keys)] = figures
    return found


async def test_figures_by_department(client: httpx.AsyncClient, known: Known) -> None:
    report = await _figures(client, **{"group-by": "department"})
    assert report["threshold"] == THRESHOLD
    assert _groups(report, "department") == {
        # 3 vaccinations shown; 2 consultations withheld: partial
        ("75",): ZERO
        | {
            "booked": 3,
            "fulfilled": SUPPRESSED,
            "doses-delivered": 20,
            "doses-reserved": 3,
            "doses-administered": SUPPRESSED,
            "partial": ["booked"],
        },
        ("69",): ZERO | {"booked": 3, "cancelled": SUPPRESSED},
    }
    assert report["total"] == ZERO | {
        "booked": 6,
        "cancelled": SUPPRESSED,
        "fulfilled": SUPPRESSED,
        "doses-delivered": 20,
        "doses-reserved": 3,
        "doses-administered": SUPPRESSED,
        "partial": ["booked"],
    }


async def test_figures_by_department_and_service_type_and_by_day(
    client: httpx.AsyncClient, known: Known
) -> None:
    both = await _figures(client, **{"group-by": ["department", "service-type"]})
    assert _groups(both, "department", "service-type") == {
        ("75", GP): ZERO | {"booked": SUPPRESSED},
        ("75", IMMUNIZATION): ZERO | {"booked": 3, "fulfilled": SUPPRESSED, "doses-reserved": 3},
        ("75", None): ZERO | {"doses-delivered": 20, "doses-administered": SUPPRESSED},
        ("69", GP): ZERO | {"booked": 3, "cancelled": SUPPRESSED},
    }
    by_day = await _figures(client, **{"group-by": "day"})
    assert [g["day"] for g in by_day["groups"]] == [D1.isoformat(), D2.isoformat()]
    assert by_day["groups"][0]["booked"] == 3 and by_day["groups"][0]["partial"] == ["booked"]
    assert by_day["groups"][1]["booked"] == 3 and by_day["groups"][1]["cancelled"] == SUPPRESSED


async def test_filters_vaccines_and_windows(client: httpx.AsyncClient, known: Known) -> None:
    by_vaccine = await _figures(client, **{"group-by": "vaccine"})
    assert _groups(by_vaccine, "vaccine")[(VACCINE,)]["doses-reserved"] == 3
    assert _groups(by_vaccine, "vaccine")[(None,)]["booked"] == 3  # Lyon's; Paris's withheld
    consultations = await _figures(client, **{"group-by": "department", "service-type": GP})
    assert [(g["department"], g["booked"]) for g in consultations["groups"]] == [
        ("69", 3),
        ("75", SUPPRESSED),
    ]
    second_day = await _figures(client, **{"group-by": "department", "from": D2.isoformat()})
    assert [g["department"] for g in second_day["groups"]] == ["69"]
    nothing = await _figures(client, **{"from": "2001-01-01", "to": "2001-01-31"})
    assert nothing["groups"] == [] and nothing["total"] == ZERO


async def test_csv_says_the_same_without_a_token(app: FastAPI, known: Known) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as anonymous:
        params = {**WINDOW, "group-by": "department,day"}
        response = await anonymous.get(
            "/stats/appointments", params=params, headers={"Accept": "text/csv"}
        )
        as_json = (await anonymous.get("/stats/appointments", params=params)).json()
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows[0].keys() == {"department", "day", *ZERO, "partial"}
    assert [(r["department"], r["day"], r["booked"], r["partial"]) for r in rows] == [
        ("69", D2.isoformat(), "3", ""),
        ("75", D1.isoformat(), "3", "booked"),
    ]
    assert [{k: str(v) for k, v in g.items() if k != "partial"} for g in as_json["groups"]] == [
        {k: v for k, v in r.items() if k != "partial"} for r in rows
    ]


async def test_no_identifier_is_published(client: httpx.AsyncClient, known: Known) -> None:
    everything = [
        (await client.get("/stats/appointments", params={**WINDOW, "group-by": by})).text
        for by in ("department,service-type,vaccine", "day,department")
    ]
    for text in everything:
        for identifier in known.identifiers:
            assert identifier not in text
        assert "Patient" not in text and "Practitioner" not in text and "Location" not in text


async def test_clients_cannot_forge_a_figure(client: httpx.AsyncClient, known: Known) -> None:
    """A client's own tags under our systems are replaced by the server's (or dropped)."""
    forged = {"meta": {"tag": [{"system": STAT_DEPARTMENT, "code": "13"}, {"code": "mine"}]}}
    patient = await create(client, {"resourceType": "Patient", **forged})
    assert patient["meta"]["tag"] == [{"code": "mine"}]
    found = await client.get("/fhir/Appointment", params={"_tag": f"{STAT_DEPARTMENT}|75"})
    appointment = found.json()["entry"][0]["resource"]
    put = await client.put(
        f"/fhir/Appointment/{appointment['id']}",
        json={**appointment, **forged},
        headers=FHIR_JSON,
    )
    assert put.status_code == 200, put.text
    # the stat tags are not shown, but still searched: the forged 13 replaced by the real 75
    assert put.json()["meta"]["tag"] == [{"code": "mine"}]
    still = await client.get("/fhir/Appointment", params={"_tag": f"{STAT_DEPARTMENT}|75"})
    assert appointment["id"] in {e["resource"]["id"] for e in still.json()["entry"]}
    forged_found = await client.get("/fhir/Appointment", params={"_tag": f"{STAT_DEPARTMENT}|13"})
    assert not forged_found.json().get("entry")
    report = await _figures(client, **{"group-by": "department"})
    assert [g["department"] for g in report["groups"]] == ["69", "75"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({}, "'from' is required"),
        ({"from": "2026-01-01"}, "'to' is required"),
        ({"from": "01/01/2026", "to": "2026-01-02"}, "YYYY-MM-DD"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "before"),
        ({"from": "2026-01-01", "to": "2027-01-02"}, "366 days"),
        ({**WINDOW, "group-by": "patient"}, "none of"),
        ({**WINDOW, "group-by": "day,day"}, "twice"),
        ({**WINDOW, "group-by": "day,department,vaccine,service-type"}, "at most 3"),
        ({**WINDOW, "groupby": "day"}, "Unknown parameter 'groupby'"),
        ({**WINDOW, "_format": "xml"}, "_format"),
    ],
)
async def test_bad_inputs_are_400(client: httpx.AsyncClient, query: dict, says: str) -> None:
    response = await client.get("/stats/appointments", params=query)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert says in body["issue"][0]["diagnostics"]
