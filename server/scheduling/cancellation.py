"""`Schedule/{id}/$cancel-appointments`: the owner's selective cancellation.

The owner says which bookings (a window, service types, the booking app, booked after a date) and
why; `dry-run` answers exactly what would be cancelled and changes nothing. Otherwise every one
of them is cancelled, its slot and dose released, and each patient gets one `Communication` in
status `preparation` naming the reason and the appointments, for any notification channel to
send. Everything happens in one transaction: all of them or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.auth import labels
from server.fhir import outcome
from server.fhir.values import format_instant, parse_instant
from server.scheduling.booking import cancel_in
from server.scheduling.claims import extension, patients
from server.scheduling.queries import find_all
from server.scheduling.retry import atomically
from server.scheduling.rules import SchedulingRules
from server.scheduling.vocabulary import BOOKING_RECORD, CANCELLATION_REASON
from server.store import writes
from server.store.base import Store, Transaction, Version

Body = dict[str, Any]
ACTIVE = "pending,booked,arrived,checked-in"


@dataclass(frozen=True)
class Selection:
    reason: str
    start: datetime | None = None
    end: datetime | None = None
    service_types: list[str] = field(default_factory=list)  # "system|code" or "code"
    booked_by: list[str] = field(default_factory=list)  # client ids
    created_after: datetime | None = None


@dataclass(frozen=True)
class Cancelled:
    appointments: list[Version]
    communications: list[Version]


async def cancel_appointments(
    store: Store, rules: SchedulingRules, schedule_id: str, selection: Selection, dry_run: bool
) -> Cancelled:
    async def work(tx: Transaction) -> Cancelled:
        schedule = await tx.current("Schedule", schedule_id)
        if schedule is None or schedule.deleted:
            raise outcome.not_found(f"Schedule/{schedule_id} not found")
        rules.access.readable("Schedule", schedule_id, schedule.body)
        rules.access.require_manage(labels.owners(schedule.body), f"Schedule/{schedule_id}")
        chosen = await _selected(tx, rules, schedule_id, selection)
        if dry_run:
            return Cancelled(chosen, [])
        reason = {
            "coding": [{"system": CANCELLATION_REASON, "code": "prov"}],
            "text": selection.reason,
        }
        done = [await cancel_in(tx, rules, version.id, reason) for version in chosen]
        return Cancelled(done, await _notify(tx, rules, done, selection.reason))

    return await atomically(store, work, rules.trail)


async def _selected(
    tx: Transaction, rules: SchedulingRules, schedule_id: str, selection: Selection
) -> list[Version]:
    start = selection.start or rules.policy.now()
    params = [
        ("slot:Slot.schedule", f"Schedule/{schedule_id}"),
        ("status", ACTIVE),
        ("date", f"ge{format_instant(start)}"),
    ]
    if selection.end:
        params.append(("date", f"lt{format_instant(selection.end)}"))
    found = await find_all(tx, rules.own_base, "Appointment", params)
    return sorted(
        (v for v in found if _chosen(v.body or {}, selection)),
        key=lambda v: ((v.body or {}).get("start", ""), v.id),
    )


def _chosen(body: Body, selection: Selection) -> bool:
    record = _booking_record(body)
    if selection.service_types and not _has_service_type(body, selection.service_types):
        return False
    if selection.booked_by and record.get("client") not in selection.booked_by:
        return False
    if selection.created_after:
        booked_at = parse_instant(record.get("bookedAt") or body.get("meta", {}).get("lastUpdated"))
        return booked_at is not None and booked_at > selection.created_after
    return True


def _has_service_type(body: Body, tokens: list[str]) -> bool:
    for concept in body.get("serviceType", []):
        for coding in concept.get("coding", []):
            if f"{coding.get('system')}|{coding.get('code')}" in tokens or (
                coding.get("code") in tokens
            ):
                return True
    return False


def _booking_record(body: Body) -> dict[str, Any]:
    item = extension(body, BOOKING_RECORD) or {}
    return {
        part.get("url"): part.get("valueString") or part.get("valueInstant")
        for part in item.get("extension", [])
    }


async def _notify(
    tx: Transaction, rules: SchedulingRules, cancelled: list[Version], reason: str
) -> list[Version]:
    """One Communication per patient, naming every appointment of theirs that was cancelled."""
    by_patient: dict[str, list[Version]] = {}
    for version in cancelled:
        for patient in patients(version.body or {}, rules.own_base):
            by_patient.setdefault(patient, []).append(version)
    created = []
    for patient, appointments in sorted(by_patient.items()):
        references = [{"reference": f"Appointment/{v.id}"} for v in appointments]
        communication = {
            "resourceType": "Communication",
            "status": "preparation",
            "subject": {"reference": patient},
            "recipient": [{"reference": patient}],
            "about": references,
            "payload": [{"contentString": reason}] + [{"contentReference": r} for r in references],
        }
        created.append(await writes.create(tx, communication, own_base=rules.own_base, rules=rules))
    return created
