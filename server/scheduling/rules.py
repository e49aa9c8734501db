"""The scheduling rules, enforced on every write of every path.

Interactions (REST and Bundles) and the scheduling operations all write through
`server.store.writes` with these rules, so a plain `POST Appointment` that books a slot meets
exactly the checks of `$book`: the slot must be bookable, a vaccination must find a dose, and the
slot's seat and the dose are taken in the same transaction as the appointment is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from server.audit.trail import Trail
from server.auth import grants, labelling, labels
from server.auth.access import Access, forbidden
from server.fhir import outcome
from server.fhir.conformity import Conformity
from server.fhir.values import format_instant
from server.limits import Limits
from server.scheduling import (
    availability,
    generation,
    hold_tallies,
    hold_terms,
    identifiers,
    ledger,
    national_identifiers,
    quotas,
    slots,
    spans,
    states,
)
from server.scheduling.claims import (
    Claim,
    claim_of,
    dose_reservation,
    patients,
    slot_ids,
)
from server.scheduling.policy import Policy
from server.scheduling.proposals import PROPOSAL, proposed_slot
from server.scheduling.vocabulary import (
    BOOKING_RECORD,
    DOSE_RESERVATION,
    HOLD_EXPIRES,
    HOLDING,
    SERVER_MANAGED,
    SLOT_CAPACITY,
)
from server.stats import stamping
from server.store.base import Transaction, Version

Body = dict[str, Any]


@dataclass(frozen=True)
class SchedulingRules:
    """`trail` records each version stored (None: unaudited, as when loading fixtures)."""

    policy: Policy
    access: Access
    own_base: str
    trail: Trail | None = None
    limits: Limits = field(default_factory=Limits)  # what a generation of slots may cost
    later: generation.Later | None = None  # large generations, written after the commit
    settling: bool = False  # the server writing a Slot status it derives (`slots.settle_status`)
    conformity: Conformity | None = None  # generated Slots meet the profiles their rule names

    async def before(
        self, tx: Transaction, previous: Body | None, body: Body | None
    ) -> Body | None:
        kind = (body or previous or {}).get("resourceType")
        if body is not None:
            body = await labelling.label(tx, previous, body, self.access.client_id, self.own_base)
        if kind == "Appointment":
            body = await self._appointment(tx, previous, body)
            per_client = self.limits.holds_per_client
            await hold_tallies.record(
                tx, previous, body, self.policy.now(), self.own_base, per_client
            )
            return await stamping.stamp(tx, previous, body, self.own_base)
        if kind == "Slot":
            if body is not None and not self.settling:
                body = slots.as_written_by_client(previous, body)
            await self._slot(tx, previous, body)
        elif kind == "Schedule" and _availability(previous) != _availability(body):
            availability.parse_rules(body or {}, availability.Caps.of(self.limits))
        elif kind == "Basic":
            await grants.note_change(tx, previous, body)
        elif kind == "SupplyDelivery":
            await ledger.record(
                tx,
                "delivered",
                ledger.delivered(previous, self.own_base),
                ledger.delivered(body, self.own_base),
            )
        elif kind == "Immunization":
            await ledger.record(
                tx,
                "administered",
                ledger.administered(previous, self.own_base),
                ledger.administered(body, self.own_base),
            )
        elif kind in national_identifiers.KINDS:
            systems = self.policy.national_identifier_systems
            await national_identifiers.check(tx, self.own_base, systems, previous, body)
        return await stamping.stamp(tx, previous, body, self.own_base)

    async def after(self, tx: Transaction, previous: Body | None, version: Version) -> None:
        if self.trail is not None:
            self.trail.saw(version, self._change(previous, version), previous)
        if version.type == "Appointment":
            await labelling.spread_to_patients(tx, version, self.own_base)
            touched = set(slot_ids(previous or {}, self.own_base))
            touched |= set(slot_ids(version.body or {}, self.own_base))
            server = replace(self, settling=True)
            for slot_id in sorted(touched):
                await slots.settle_status(tx, slot_id, self.policy.now(), self.own_base, server)
        elif version.type == "Slot" and previous and version.body and not self.settling:
            if slots.capacity(previous) != slots.capacity(version.body):
                server = replace(self, settling=True)
                await slots.settle_status(tx, version.id, self.policy.now(), self.own_base, server)
        elif version.type == "Schedule" and _availability(previous) != _availability(version.body):
            await generation.generate(tx, version, self.own_base, self, self.policy.now())

    def _change(self, previous: Body | None, version: Version) -> str | None:
        """What an Appointment version does to a booking: book, cancel or reschedule."""
        if version.type != "Appointment" or version.body is None:
            return None
        now = self.policy.now()
        before, after = (
            claim_of(previous, now, self.own_base),
            claim_of(version.body, now, self.own_base),
        )
        if after.booked and not before.booked:
            return "book"
        if after.booked and after.slots != before.slots:
            return "reschedule"
        was = (previous or {}).get("status")
        if version.body.get("status") == "cancelled" and was not in (None, "cancelled"):
            return "cancel"
        return None

    # Appointment

    async def _appointment(
        self, tx: Transaction, previous: Body | None, body: Body | None
    ) -> Body | None:
        if body is None:
            if previous is not None and slot_ids(previous, self.own_base):
                raise outcome.conflict(
                    "An Appointment on a slot is never deleted: cancel it ($cancel) instead",
                    code="business-rule",
                )
            return None
        now = self.policy.now()
        if previous is None and proposed_slot(body["id"]) is not None:
            raise outcome.invalid_one(
                f"Appointment ids starting {PROPOSAL!r} are the proposals $find makes: "
                "choose another id",
                "Appointment.id",
            )
        states.check(body["id"], (previous or {}).get("status"), body.get("status"))
        hold_terms.check_holder(self.access, previous, body)
        body = _carry_server_extensions(previous, body)
        expires = hold_terms.expiry(previous, now, self.policy.hold)
        if body.get("status") != HOLDING:
            body = _without_extension(body, HOLD_EXPIRES)
        elif expires is not None:
            body = _with_extension(body, expires)
        await self._check_identifiers(tx, body)
        await self.access.check_patients(tx, previous, body, self.own_base)
        before = claim_of(previous, now, self.own_base)
        after = claim_of(body, now, self.own_base)
        self._check_slot_count(previous, body, after)
        if after.booked and not patients(body, self.own_base):
            raise outcome.invalid_one(
                "A booked Appointment needs a Patient among its participants",
                "Appointment.participant",
            )
        booking = after.booked and not before.booked
        # A booking, a hold becoming one included, meets every rule again: its hold kept the
        # seat, not the owner's say (Schedule active, Slot status, grants) nor the dose count.
        kept = before.slots if before.takes_slots and not booking else frozenset()
        taken = sorted(after.slots - kept) if after.takes_slots else []
        needs: list[tuple[str, str]] = []
        for slot_id in taken:
            slot, schedule = await slots.take(
                tx, slot_id, now, self.own_base, appointment_id=body["id"]
            )
            self._check_may_book(slot_id, slot.body)
            body = _completed(body, slot.body or {}, schedule)
            needs += self._dose_need(slot.body or {}, schedule)
        ids = slot_ids(body, self.own_base)
        body = await spans.fitted(tx, previous, body, ids, after.takes_slots)
        body = await self._doses(tx, previous, body, before, after, needs[:1], now)
        if booking:
            body = _with_extension(body, self._booking_record(now))
            await quotas.count(tx, self.access, labels.owners(body), now)
        return body

    def _check_slot_count(self, previous: Body | None, body: Body, after: Claim) -> None:
        """At most `slots_per_appointment` slots, when it takes them or changes them."""
        count, cap = len(body.get("slot", [])), self.limits.slots_per_appointment
        changed = body.get("slot") != (previous or {}).get("slot")
        if count > cap and (changed or after.takes_slots):
            raise outcome.invalid_one(
                f"An Appointment takes at most {cap} slots (limit slots_per_appointment); "
                f"this one names {count}",
                "Appointment.slot",
                code="business-rule",
            )

    def _check_may_book(self, slot_id: str, slot: Body | None) -> None:
        """Booking into a schedule needs its owner's `book` grant (or being the owner's own),
        and a slot the client may see (published for an audience it acts for)."""
        if not self.access.can_read("Slot", slot):
            raise outcome.not_found(f"Slot/{slot_id} not found")
        if self.access.may_book(labels.owners(slot)):
            return
        raise forbidden(
            f"Client {self.access.client_id} may not book Slot/{slot_id}: "
            "its owner has not granted it book"
        )

    def _dose_need(self, slot: Body, schedule: Body) -> list[tuple[str, str]]:
        """[(place, vaccine)] when the slot is a vaccination; refused if the Schedule does not
        say which vaccine or where."""
        if not self.policy.is_vaccination(
            slot.get("serviceType") or schedule.get("serviceType", [])
        ):
            return []
        place, vaccine = ledger.place_of(schedule, self.own_base), ledger.vaccine_of(schedule)
        if place is None or vaccine is None:
            raise outcome.conflict(
                "This vaccination slot's Schedule names no vaccine (vaccine-product extension) "
                "or no Location or Practitioner: no dose can be reserved",
                code="business-rule",
            )
        return [(place, ledger.vaccine_key(vaccine))]

    async def _doses(
        self,
        tx: Transaction,
        previous: Body | None,
        body: Body,
        before: Claim,
        after: Claim,
        needs: list[tuple[str, str]],
        now: datetime,
    ) -> Body:
        """Reserve, keep, move or release the appointment's dose as its claim changes."""
        held = dose_reservation(previous) if previous and before.takes_dose else None
        same_slots = before.takes_slots and after.slots <= before.slots
        converted = before.holding and after.booked  # counted again, as a fresh booking is
        if after.takes_dose and same_slots and held and not converted:
            return body
        if held and before.booked:
            await tx.tally(ledger.key(*held, "reserved"), -1)
        if not after.takes_dose:
            return body  # the reservation stays on record, released
        if not needs:
            return _without_extension(body, DOSE_RESERVATION)
        place, vaccine = needs[0]
        await ledger.reserve(tx, place, vaccine, now, self.own_base, appointment_id=body["id"])
        if after.booked:
            await tx.tally(ledger.key(place, vaccine, "reserved"), 1)
        return _with_participant(_with_extension(body, _reservation(place, vaccine)), place)

    def _booking_record(self, now: datetime) -> Body:
        parts: list[Body] = [
            {"url": "bookedAt", "valueInstant": format_instant(now)},
            {"url": "client", "valueString": self.access.client_id},
        ]
        if self.access.caller.on_behalf_of:
            parts.append({"url": "operator", "valueReference": self.access.caller.on_behalf_of})
        return {"url": BOOKING_RECORD, "extension": parts}

    async def _check_identifiers(self, tx: Transaction, body: Body) -> None:
        """An app's own identifier names one of its Appointments: the same booking is never made
        twice. Another client's appointments are not looked at (see `identifiers`)."""
        for client_id in sorted(labels.clients(body)):
            for token in identifiers.tokens(body):
                same = await identifiers.carrying(tx, self.own_base, client_id, token)
                if any(version.id != body["id"] for version in same):
                    raise outcome.conflict(
                        f"Another Appointment of this client already carries the identifier "
                        f"{token}",
                        code="duplicate",
                    )

    # Slot

    async def _slot(self, tx: Transaction, previous: Body | None, body: Body | None) -> None:
        """A Slot that appointments take cannot be deleted, moved, shrunk or marked free while
        it is full."""
        if body is not None:
            _check_capacity(body)
        if previous is None or not _slot_change_matters(previous, body):
            return
        await tx.guard(slots.guard_key(previous["id"]))
        taken = await slots.occupancy(tx, previous["id"], self.policy.now(), self.own_base)
        if taken.taken == 0:
            return
        if body is None or any(
            previous.get(k) != body.get(k) for k in ("schedule", "start", "end")
        ):
            raise outcome.conflict(
                f"Slot/{previous['id']} is taken by {taken.taken} appointment(s): cancel them "
                "before moving or deleting it",
                code="business-rule",
            )
        if slots.capacity(body) < taken.taken or (
            body.get("status") == "free" and taken.bookings >= slots.capacity(body)
        ):
            raise outcome.conflict(
                f"Slot/{previous['id']} has {taken.bookings} booking(s) and {taken.holds} "
                "hold(s): its capacity and status must leave room for them",
                code="business-rule",
            )


def _slot_change_matters(previous: Body, body: Body | None) -> bool:
    """Only these can strand an appointment: a deletion, a move, a smaller capacity, or `free`
    on a slot that was not (marking a slot busy or blocked never can)."""
    if body is None:
        return True
    moved = any(previous.get(k) != body.get(k) for k in ("schedule", "start", "end"))
    freed = body.get("status") == "free" and previous.get("status") != "free"
    return moved or freed or slots.capacity(body) < slots.capacity(previous)


def _check_capacity(body: Body) -> None:
    for item in body.get("extension", []):
        if item.get("url") == SLOT_CAPACITY:
            value = item.get("valueInteger")
            if not isinstance(value, int) or value < 1:
                raise outcome.invalid_one(
                    "slot-capacity is a valueInteger of at least 1", "Slot.extension"
                )


def _availability(body: Body | None) -> Any:
    return [e for e in (body or {}).get("extension", []) if e.get("url") == availability.URL]


def _carry_server_extensions(previous: Body | None, body: Body) -> Body:
    """Server-managed extensions come from the previous version, never from the client."""
    own = [e for e in body.get("extension", []) if e.get("url") not in SERVER_MANAGED]
    kept = [e for e in (previous or {}).get("extension", []) if e.get("url") in SERVER_MANAGED]
    return _set_extensions(body, own + kept)


def _with_extension(body: Body, item: Body) -> Body:
    others = [e for e in body.get("extension", []) if e.get("url") != item["url"]]
    return _set_extensions(body, [*others, item])


def _without_extension(body: Body, url: str) -> Body:
    return _set_extensions(body, [e for e in body.get("extension", []) if e.get("url") != url])


def _set_extensions(body: Body, extensions: list[Body]) -> Body:
    trimmed = {k: v for k, v in body.items() if k != "extension"}
    return {**trimmed, "extension": extensions} if extensions else trimmed


def _reservation(place: str, vaccine: str) -> Body:
    system, _, code = vaccine.rpartition("|")
    coding = {"system": system, "code": code} if system else {"code": code}
    return {
        "url": DOSE_RESERVATION,
        "extension": [
            {"url": "place", "valueReference": {"reference": place}},
            {"url": "vaccine", "valueCoding": coding},
        ],
    }


def _with_participant(body: Body, place: str) -> Body:
    """The place whose dose is reserved is a participant, so its holds can be found."""
    participants = body.get("participant", [])
    if any(p.get("actor", {}).get("reference") == place for p in participants):
        return body
    added = {"actor": {"reference": place}, "status": "accepted"}
    return {**body, "participant": [*participants, added]}


def _completed(body: Body, slot: Body, schedule: Body) -> Body:
    """The service type the client left out, from its slot (the Slot's, else its Schedule's);
    its start and end are the slots' span (`spans`)."""
    service_type = slot.get("serviceType") or schedule.get("serviceType")
    if service_type and not body.get("serviceType"):
        return {**body, "serviceType": service_type}
    return body
