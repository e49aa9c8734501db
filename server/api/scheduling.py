"""The scheduling operations over HTTP: inputs read from Parameters or the query string, the
domain in `server.scheduling` called, its result rendered as FHIR."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from server.api.deps import Rules, StoreDep
from server.api.inputs import inputs_of
from server.api.negotiation import check_accept, fhir_response
from server.api.replies import etag, version_reply
from server.auth import labels, owners
from server.auth.access import Access
from server.fhir import outcome, resources
from server.fhir.bundles import bundle, collection_entry, search_entry
from server.fhir.parameters import Inputs
from server.scheduling import booking, cancellation, generation, ledger
from server.scheduling.retry import atomically
from server.store.base import Transaction, Version

router = APIRouter(prefix="/fhir", dependencies=[Depends(check_accept)])


@router.post("/Appointment/$hold")
async def hold(
    inputs: Annotated[Inputs, inputs_of("appointment-hold", ("Appointment", "c"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    held = await booking.hold(store, rules, _appointment_request(inputs))
    return _appointment_reply(201, [held], rules.own_base)


@router.post("/Appointment/$book")
async def book(
    inputs: Annotated[Inputs, inputs_of("appointment-book", ("Appointment", "c"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    cancelled_id = _local_id(inputs.text("cancelled-appt-id"), "Appointment")
    booked = await booking.book(store, rules, _appointment_request(inputs), cancelled_id)
    done = [booked.appointment] + ([booked.cancelled] if booked.cancelled else [])
    return _appointment_reply(201 if booked.created else 200, done, rules.own_base)


@router.post("/Appointment/{appointment_id}/$cancel")
async def cancel(
    appointment_id: str,
    inputs: Annotated[Inputs, inputs_of("appointment-cancel", ("Appointment", "u"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    reason = inputs.concept("reason")
    version, _ = await booking.cancel(store, rules, appointment_id, reason)
    reply = version_reply(200, version, rules.own_base)
    return fhir_response(reply.status, reply.body, reply.headers)


@router.post("/Schedule/{schedule_id}/$cancel-appointments")
async def cancel_appointments(
    schedule_id: str,
    inputs: Annotated[Inputs, inputs_of("schedule-cancel-appointments", ("Appointment", "u"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    reason = inputs.text("reason", required=True)
    if not reason or not reason.strip():
        raise outcome.bad_request("reason must say why the appointments are cancelled")
    selection = cancellation.Selection(
        reason=reason,
        start=inputs.instant("start"),
        end=inputs.instant("end"),
        service_types=inputs.tokens("service-type"),
        booked_by=[str(v) for v in inputs.all("booked-by")],
        created_after=inputs.instant("created-after"),
    )
    dry_run = inputs.boolean("dry-run")
    done = await cancellation.cancel_appointments(store, rules, schedule_id, selection, dry_run)
    entries = [
        collection_entry(v.body or {}, rules.own_base)
        for v in done.appointments + done.communications
    ]
    return fhir_response(200, bundle("collection", entries))


@router.api_route("/Location/{place_id}/$doses", methods=["GET", "POST"])
@router.api_route("/Practitioner/{place_id}/$doses", methods=["GET", "POST"])
async def doses(
    request: Request,
    place_id: str,
    inputs: Annotated[Inputs, inputs_of("doses", ("SupplyDelivery", "r"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    kind = request.url.path.split("/")[-3]  # the place was found by `inputs_of`
    place = f"{kind}/{place_id}"
    place_owners = await owners.of_actor(store, place, rules.own_base)
    if not (rules.access.admin or place_owners & rules.access.discover):
        raise _hidden_doses(rules.access, kind, place_id)
    wanted = inputs.tokens("vaccine")
    balances = await ledger.balances(store, place, rules.policy.now(), rules.own_base)
    for vaccine in await ledger.offered(store, place, rules.own_base) - set(balances):
        balances[vaccine] = ledger.Balance(vaccine)
    rows = [
        b
        for vaccine, b in sorted(balances.items())
        if not wanted or vaccine in wanted or vaccine.rpartition("|")[2] in wanted
    ]
    answer: dict[str, Any] = {"resourceType": "Parameters"}
    if rows:  # FHIR JSON has no empty arrays
        answer["parameter"] = [_balance(b) for b in rows]
    return fhir_response(200, answer)


def _hidden_doses(access: Access, kind: str, place_id: str) -> outcome.FhirError:
    return outcome.FhirError(
        403,
        [
            outcome.Issue(
                "forbidden",
                f"Client {access.client_id} may not read the doses of {kind}/{place_id}: "
                "its owner has not granted it discover",
            )
        ],
    )


async def _owned_schedule(tx: Transaction, access: Access, schedule_id: str) -> Version:
    """The Schedule, for its owners' clients and those it granted manage (404 if hidden)."""
    schedule = await tx.current("Schedule", schedule_id)
    if schedule is None or schedule.deleted:
        raise outcome.not_found(f"Schedule/{schedule_id} not found")
    access.readable("Schedule", schedule_id, schedule.body)
    access.require_manage(labels.owners(schedule.body), f"Schedule/{schedule_id}")
    return schedule


def _balance(balance: ledger.Balance) -> dict[str, Any]:
    system, _, code = balance.vaccine.rpartition("|")
    coding = {"system": system, "code": code} if system else {"code": code}
    return {
        "name": "vaccine",
        "part": [
            {"name": "code", "valueCoding": coding},
            *(
                {"name": measure, "valueInteger": getattr(balance, measure)}
                for measure in ("delivered", "administered", "reserved", "available")
            ),
        ],
    }


@router.post("/Schedule/{schedule_id}/$generate-slots")
async def generate_slots(
    schedule_id: str,
    inputs: Annotated[Inputs, inputs_of("schedule-generate-slots", ("Slot", "c"))],
    store: StoreDep,
    rules: Rules,
) -> Response:
    until = inputs.instant("horizon-end")

    async def work(tx: Transaction) -> generation.Generated:
        schedule = await _owned_schedule(tx, rules.access, schedule_id)
        return await generation.generate(
            tx, schedule, rules.own_base, rules, rules.policy.now(), until
        )

    done = await atomically(store, work, rules.trail)
    return fhir_response(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "created", "valueInteger": done.created},
                {"name": "skipped", "valueInteger": done.skipped},
            ],
        },
    )


# Each input under the names of our definition, the Argonaut IG, IHE ITI and Medplum.
APPOINTMENT_INPUTS = ("appt-resource", "appointment-resource", "appointment")
REFERENCE_INPUTS = ("appt-id", "appointment-reference")


def _appointment_request(inputs: Inputs) -> booking.Request:
    appointments = [a for n in APPOINTMENT_INPUTS if (a := inputs.resource(n, "Appointment"))]
    references = [_reference_text(inputs, n) for n in REFERENCE_INPUTS if inputs.all(n)]
    slot = inputs.one("slot")
    slot_reference = slot.get("reference") if isinstance(slot, dict) else slot
    given = appointments + references + ([slot_reference] if slot_reference else [])
    if len(given) != 1:
        names = (*APPOINTMENT_INPUTS, *REFERENCE_INPUTS, "slot")
        offered = " or ".join(n for n in names if n in inputs.known)
        raise outcome.bad_request(f"Give exactly one of {offered}")
    patient = _reference_text(inputs, "patient-id") if inputs.all("patient-id") else None
    return booking.Request(
        appointment=resources.validate(appointments[0], "Appointment") if appointments else None,
        appointment_id=_local_id(references[0], "Appointment") if references else None,
        slot=slot_reference if isinstance(slot_reference, str) else None,
        patient=f"Patient/{_local_id(patient, 'Patient')}" if patient else None,
        comment=inputs.text("comment"),
    )


def _reference_text(inputs: Inputs, name: str) -> str:
    """A reference given as a valueReference, a valueString or valueUri, or in a query."""
    value = inputs.one(name)
    text = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(text, str) or not text:
        raise outcome.bad_request(f"Parameter {name!r} must be a reference")
    return text


def _local_id(reference: str | None, kind: str) -> str | None:
    """The id in `Kind/id` or a bare id."""
    if reference is None:
        return None
    head, _, tail = reference.rstrip("/").rpartition("/")
    if head and not head.endswith(kind):
        raise outcome.bad_request(f"{reference!r} is not a {kind}")
    resources.check_id(tail)
    return tail


def _appointment_reply(status: int, versions: list[Version], own_base: str) -> Response:
    """A `searchset` Bundle, as the Argonaut and IHE Bundle profiles have it: the Appointment
    the operation made (`match`), then the one a reschedule cancelled (`include`)."""
    first = versions[0]
    entries = [
        search_entry(v.body or {}, own_base, "match" if n == 0 else "include")
        for n, v in enumerate(versions)
    ]
    headers = {
        "ETag": etag(first.version),
        "Location": f"{own_base}/Appointment/{first.id}/_history/{first.version}",
    }
    return fhir_response(status, bundle("searchset", entries, total=1), headers)
