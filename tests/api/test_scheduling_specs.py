"""The scheduling operations as clients of other specifications call them: the Argonaut
Scheduling IG, IHE ITI Scheduling and Medplum, each with its own input names only, and the Bundle
shapes those guides require. Then `$find`'s paging, windows and the inputs it does not use."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from tests.api.rule_paths_setup import open_clinic
from tests.api.scheduling_setup import TOMORROW, add_slots, open_practice, refusal, slot_status
from tests.factories import CONSULTATION, FHIR_JSON, operate, participants, ref

VISIT = f"{CONSULTATION['coding'][0]['system']}|{CONSULTATION['coding'][0]['code']}"


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The `match` resources of a searchset Bundle, checking its shape on the way: type
    searchset, every entry with a resource and a search mode."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset", bundle
    for entry in bundle.get("entry", []):
        assert entry["resource"]["resourceType"] and entry["search"]["mode"] in (
            "match",
            "include",
            "outcome",
        )
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith("http://test/fhir/Appointment/")
    (appointment,) = matches(response.json())
    assert response.headers["location"].split("/")[-3] == appointment["id"]
    return appointment


async def test_the_argonaut_flow(client: httpx.AsyncClient) -> None:
    """$find with `visit-type` and a `practitioner` uri, $hold the proposal, $book the hold
    by `appt-id` with `patient-id` and `comment`."""
    practice = await open_practice(client, patients=1)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    window = {"start": TOMORROW.isoformat(), "end": (TOMORROW + timedelta(days=1)).isoformat()}
    found = await client.get(
        "/fhir/Appointment/$find",
        params={**window, "visit-type": VISIT, "practitioner": ref(practice.practitioner)},
    )
    (proposal,) = matches(found.json())
    assert proposal["status"] == "proposed" and proposal["slot"] == [
        {"reference": f"Slot/{slot_id}"}
    ]
    hold = created(await operate(client, "Appointment/$hold", ("appt-resource", proposal)))
    assert hold["status"] == "pending"
    booked = created(
        await operate(
            client,
            "Appointment/$book",
            ("appt-id", f"Appointment/{hold['id']}"),
            ("patient-id", practice.patients[0]["id"]),
            ("comment", "Première visite"),
        )
    )
    assert booked["id"] == hold["id"] and booked["status"] == "booked"
    assert booked["comment"] == "Première visite"
    assert {"reference": ref(practice.patients[0])} in [p["actor"] for p in booked["participant"]]
    assert await slot_status(client, slot_id) == "busy"


async def test_the_ihe_flow(client: httpx.AsyncClient) -> None:
    """POSTed $find with IHE's names (dates alone, `visit-type`, `practitioner` and
    `location-reference` as References), $hold by `appointment-reference` to the proposal,
    $book by `appointment-resource`."""
    practice = await open_practice(client, patients=1)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    found = await client.post(
        "/fhir/Appointment/$find",
        json={
            "resourceType": "Parameters",
            "parameter": [
                {"name": "start", "valueDateTime": TOMORROW.date().isoformat()},
                {"name": "end", "valueDateTime": TOMORROW.date().isoformat()},
                {"name": "visit-type", "valueString": VISIT},
                {
                    "name": "practitioner",
                    "valueReference": {"reference": ref(practice.practitioner)},
                },
                {"name": "location-reference", "valueReference": {"reference": practice.place}},
            ],
        },
        headers=FHIR_JSON,
    )
    assert found.status_code == 200, found.text
    (proposal,) = matches(found.json())
    reference = {"reference": f"Appointment/{proposal['id']}"}
    hold = created(await operate(client, "Appointment/$hold", ("appointment-reference", reference)))
    assert hold["status"] == "pending" and hold["id"] != proposal["id"]
    completed = {
        **hold,
        "participant": hold["participant"] + participants(ref(practice.patients[0])),
    }
    booked = created(
        await operate(client, "Appointment/$book", ("appointment-resource", completed))
    )
    assert booked["id"] == hold["id"] and booked["status"] == "booked"
    assert await slot_status(client, slot_id) == "busy"


async def test_a_proposal_is_booked_by_reference_or_sent_back(client: httpx.AsyncClient) -> None:
    """A proposal stands for its slot, stored nowhere: booked by reference with the patient
    named, or sent back whole (Medplum's `appointment`), it books that slot once."""
    practice = await open_practice(client, patients=2)
    one, two = await add_slots(client, practice.consultations, 2)
    window = {"start": TOMORROW.isoformat()}
    first, second = matches((await client.get("/fhir/Appointment/$find", params=window)).json())
    assert (await client.get(f"/fhir/Appointment/{first['id']}")).status_code == 404
    by_reference = created(
        await operate(
            client,
            "Appointment/$book",
            ("appt-id", f"Appointment/{first['id']}"),
            ("patient-id", ref(practice.patients[0])),
        )
    )
    assert by_reference["slot"] == [{"reference": f"Slot/{one}"}]
    again = await operate(
        client,
        "Appointment/$book",
        ("appointment-reference", {"reference": f"Appointment/{first['id']}"}),
        ("patient-id", ref(practice.patients[1])),
    )
    assert "cannot be booked" in refusal(again)
    sent_back = {
        **second,
        "participant": second["participant"] + participants(ref(practice.patients[1])),
    }
    medplum = created(await operate(client, "Appointment/$book", ("appointment", sent_back)))
    assert medplum["slot"] == [{"reference": f"Slot/{two}"}] and medplum["id"] != second["id"]


async def test_find_pages_with_next_links_and_a_true_total(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    slots = await add_slots(client, practice.consultations, 5)
    first = (
        await client.get(
            "/fhir/Appointment/$find", params={"start": TOMORROW.isoformat(), "_count": "2"}
        )
    ).json()
    seen, page, pages = [m["slot"][0]["reference"] for m in matches(first)], first, 1
    assert "total" not in first  # not known before the last page
    while url := next(
        (link["url"] for link in page.get("link", []) if link["relation"] == "next"), None
    ):
        page = (await client.get(url.removeprefix("http://test"))).json()
        seen += [m["slot"][0]["reference"] for m in matches(page)]
        pages += 1
        assert pages < 10
    assert seen == [f"Slot/{s}" for s in slots] and pages == 3
    assert page["total"] == 5


async def test_find_windows_read_dates_as_whole_days(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    late = TOMORROW.replace(hour=22)
    (evening,) = await add_slots(client, practice.consultations, 1, first=late)
    (week_after,) = await add_slots(
        client, practice.consultations, 1, first=TOMORROW + timedelta(days=8)
    )
    day = TOMORROW.date().isoformat()
    same_day = await client.get("/fhir/Appointment/$find", params={"start": day, "end": day})
    assert [m["slot"][0]["reference"] for m in matches(same_day.json())] == [f"Slot/{evening}"]
    week = await client.get("/fhir/Appointment/$find", params={"start": day})  # 7 days
    assert f"Slot/{week_after}" not in [m["slot"][0]["reference"] for m in matches(week.json())]


async def test_find_says_which_inputs_it_did_not_use(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    await add_slots(client, practice.consultations, 1)
    params = {
        "start": TOMORROW.isoformat(),
        "patient-reference": ref(practice.patients[0]),
        "colour": "blue",
    }
    lenient = (await client.get("/fhir/Appointment/$find", params=params)).json()
    assert len(matches(lenient)) == 1
    (outcome,) = [e["resource"] for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    said = outcome["issue"][0]["diagnostics"]
    assert "colour" in said and "patient-reference" in said
    prefer = {"Prefer": "handling=strict"}
    for name, value in (("patient-reference", ref(practice.patients[0])), ("colour", "blue")):
        strict = await client.get(
            "/fhir/Appointment/$find",
            params={"start": TOMORROW.isoformat(), name: value},
            headers=prefer,
        )
        assert name in refusal(strict, 400)


async def test_find_by_any_part_of_an_address(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)  # its Location is in Paris, 75020
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    for text, found in (("paris", True), ("7502", True), ("Lyon", False)):
        answer = await client.get(
            "/fhir/Appointment/$find",
            params={"start": TOMORROW.isoformat(), "location-string": text},
        )
        slots = [m["slot"][0]["reference"] for m in matches(answer.json())]
        assert (f"Slot/{slot_id}" in slots) is found, text


async def test_proposal_ids_are_not_for_stored_appointments(client: httpx.AsyncClient) -> None:
    """Nobody may take a proposal's id for an Appointment of their own (and so hide the slot's
    proposal from every other app)."""
    practice = await open_practice(client, patients=1)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    squatted = {
        "resourceType": "Appointment",
        "id": f"p-{slot_id}",
        "status": "proposed",
        "participant": participants(ref(practice.patients[0])),
    }
    answer = await client.put(f"/fhir/Appointment/p-{slot_id}", json=squatted, headers=FHIR_JSON)
    assert "proposals" in refusal(answer, 422)


async def test_an_accurate_total_on_every_page(client: httpx.AsyncClient) -> None:
    """`_total=accurate` counts every bookable proposal of the window, holds and doses seen."""
    practice = await open_practice(client, patients=1)
    slots = await add_slots(client, practice.consultations, 5)
    held = await operate(client, "Appointment/$hold", ("slot", {"reference": f"Slot/{slots[4]}"}))
    assert held.status_code == 201, held.text
    params = {"start": TOMORROW.isoformat(), "_count": "2", "_total": "accurate"}
    first = (await client.get("/fhir/Appointment/$find", params=params)).json()
    assert first["total"] == 4 and len(matches(first)) == 2
    url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = (await client.get(url.removeprefix("http://test"))).json()
    assert second["total"] == 4
    refusal(await client.get("/fhir/Appointment/$find", params={**params, "_total": "all"}), 400)


async def test_pages_never_offer_more_vaccinations_than_doses(client: httpx.AsyncClient) -> None:
    clinic = await open_clinic(client, slots=4, doses=2)
    params = {"start": TOMORROW.isoformat(), "location": clinic.place, "_count": "1"}
    page = (await client.get("/fhir/Appointment/$find", params=params)).json()
    offered = [m["slot"][0]["reference"] for m in matches(page)]
    while url := next((lk["url"] for lk in page.get("link", []) if lk["relation"] == "next"), None):
        page = (await client.get(url.removeprefix("http://test"))).json()
        offered += [m["slot"][0]["reference"] for m in matches(page)]
    assert offered == [f"Slot/{s}" for s in clinic.slots[:2]]


async def test_find_reads_an_offset_whose_plus_was_not_encoded(client: httpx.AsyncClient) -> None:
    practice = await open_practice(client)
    (slot_id,) = await add_slots(client, practice.consultations, 1)
    day = TOMORROW.date().isoformat()
    answer = await client.get(f"/fhir/Appointment/$find?start={day}T00:00:00.000 01:00")
    assert answer.status_code == 200, answer.text
    assert [m["slot"][0]["reference"] for m in matches(answer.json())] == [f"Slot/{slot_id}"]
