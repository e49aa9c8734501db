"""`$hold`, `$book` (with rescheduling) and `$cancel`.

Each builds the next version of an Appointment and writes it through the scheduling rules, in
one transaction: whether the slot is free, the dose available, the hold someone else's, is decided
there and only there, exactly as for a plain REST write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.fhir import outcome
from server.fhir.values import split_reference
from server.scheduling import hold_terms, identifiers
from server.scheduling.proposals import proposal, proposed_slot, with_status
from server.scheduling.retry import atomically
from server.scheduling.rules import SchedulingRules
from server.scheduling.vocabulary import BOOKED, CANCELLATION_REASON
from server.store import writes
from server.store.base import Store, Transaction, Version

Body = dict[str, Any]
RESCHEDULED = {
    "coding": [{"system": CANCELLATION_REASON, "code": "pat"}],
    "text": "Rescheduled",
}


@dataclass(frozen=True)
class Request:
    """What `$hold` and `$book` were given: an Appointment, an Appointment id, or a slot."""

    appointment: Body | None = None
    appointment_id: str | None = None
    slot: str | None = None
    patient: str | None = None  # "Patient/id", a participant to add (Argonaut's patient-id)
    comment: str | None = None


@dataclass(frozen=True)
class Booked:
    appointment: Version
    created: bool  # False when the booking already existed (same identifier, same hold)
    cancelled: Version | None = None


async def hold(store: Store, rules: SchedulingRules, request: Request) -> Version:
    async def work(tx: Transaction) -> Version:
        slot = await _proposed(tx, request.appointment_id)
        if request.appointment_id and slot is None:
            current = await _appointment(tx, rules, request.appointment_id)
            hold_terms.check_live(current.id, current.body or {}, rules.policy.now())
            held = _completed(current.body or {}, request)
            return await _write(tx, rules, with_status(held, "pending"))
        body = request.appointment or await _from_slot(tx, rules, slot or request.slot or "")
        return await _write(tx, rules, with_status(_completed(_fresh(body), request), "pending"))

    return await atomically(store, work, rules.trail)


async def book(
    store: Store, rules: SchedulingRules, request: Request, cancelled_id: str | None = None
) -> Booked:
    async def work(tx: Transaction) -> Booked:
        cancelled = await cancel_in(tx, rules, cancelled_id, RESCHEDULED) if cancelled_id else None
        existing = await _existing(tx, rules, request)
        if existing is not None and (existing.body or {}).get("status") in BOOKED:
            return Booked(existing, created=False, cancelled=cancelled)
        if existing is not None:
            merged = {**(existing.body or {}), **_fresh(request.appointment or {})}
            merged = {**merged, "id": existing.id, "meta": (existing.body or {}).get("meta", {})}
            merged = _completed(merged, request)
            return Booked(await _write(tx, rules, with_status(merged, "booked")), True, cancelled)
        named = request.appointment_id or (request.appointment or {}).get("id")
        slot = request.slot or await _proposed(tx, named)
        body = _completed(
            _fresh(request.appointment or await _from_slot(tx, rules, slot or "")), request
        )
        return Booked(await _write(tx, rules, with_status(body, "booked")), True, cancelled)

    return await atomically(store, work, rules.trail)


async def cancel(
    store: Store, rules: SchedulingRules, appointment_id: str, reason: Body | None
) -> tuple[Version, bool]:
    """The cancelled Appointment, and whether this call cancelled it (False: it already was)."""

    async def work(tx: Transaction) -> tuple[Version, bool]:
        before = await _appointment(tx, rules, appointment_id)
        after = await cancel_in(tx, rules, appointment_id, reason)
        return after, after.version != before.version

    return await atomically(store, work, rules.trail)


async def cancel_in(
    tx: Transaction, rules: SchedulingRules, appointment_id: str, reason: Body | None
) -> Version:
    """Cancel inside a transaction, recording the reason when one is given; idempotent on an
    already cancelled Appointment."""
    current = await _appointment(tx, rules, appointment_id)
    body = current.body or {}
    if body.get("status") == "cancelled":
        return current
    cancelled = {**body, "status": "cancelled"}
    if reason is not None:
        cancelled["cancelationReason"] = reason
    return await _write(tx, rules, cancelled)


async def _existing(tx: Transaction, rules: SchedulingRules, request: Request) -> Version | None:
    """The Appointment this booking continues: the one named by id (the status machine lets
    only a proposal or a hold be booked; a lapsed hold is booked afresh, if its slot is still
    free), or this client's one that already carries the app's identifier (a repeated booking
    is not booked twice)."""
    named = request.appointment_id or (request.appointment or {}).get("id")
    if named and await _proposed(tx, named) is None:
        return await _appointment(tx, rules, named)
    for token in identifiers.tokens(request.appointment or {}):
        found = await identifiers.carrying(tx, rules.own_base, rules.access.client_id, token)
        if found:
            return found[0]
    return None


async def _proposed(tx: Transaction, appointment_id: str | None) -> str | None:
    """`Slot/id` when `appointment_id` is the id of a `$find` proposal (stored nowhere)."""
    slot_id = proposed_slot(appointment_id)
    if slot_id is None or await tx.current("Appointment", appointment_id or "") is not None:
        return None
    return f"Slot/{slot_id}"


async def _from_slot(tx: Transaction, rules: SchedulingRules, slot: str) -> Body:
    kind, slot_id = split_reference(slot, rules.own_base)
    current = await tx.current("Slot", slot_id or "") if kind == "Slot" and slot_id else None
    if current is None or current.deleted:
        raise outcome.conflict(f"{slot} is not a Slot of this server", code="business-rule")
    schedule_id = (current.body or {}).get("schedule", {}).get("reference", "").rpartition("/")[2]
    schedule = await tx.current("Schedule", schedule_id)
    return proposal(current, (schedule.body if schedule else None) or {})


async def _appointment(tx: Transaction, rules: SchedulingRules, appointment_id: str) -> Version:
    """The Appointment, if this client may see it: an app acts on its own bookings and holds
    only; the schedule's owners on all of theirs."""
    current = await tx.current("Appointment", appointment_id)
    seen = current is not None and (
        rules.access.admin or rules.access.can_read("Appointment", current.body)
    )
    if current is None or not seen:
        raise outcome.not_found(f"Appointment/{appointment_id} not found")
    if current.deleted:
        raise outcome.gone(f"Appointment/{appointment_id} has been deleted")
    return current


async def _write(tx: Transaction, rules: SchedulingRules, body: Body) -> Version:
    if "id" in body:
        version, _ = await writes.update(tx, body, body["id"], own_base=rules.own_base, rules=rules)
        return version
    return await writes.create(tx, body, own_base=rules.own_base, rules=rules)


def _completed(body: Body, request: Request) -> Body:
    """The appointment with the patient and the comment the request names, if any."""
    participants = body.get("participant", [])
    named = {p.get("actor", {}).get("reference") for p in participants}
    if request.patient and request.patient not in named:
        added = {"actor": {"reference": request.patient}, "status": "accepted"}
        body = {**body, "participant": [*participants, added]}
    return {**body, "comment": request.comment} if request.comment else body


def _fresh(body: Body) -> Body:
    """A client's Appointment as the start of a new one: no id, no meta."""
    return {k: v for k, v in body.items() if k not in ("id", "meta")}
