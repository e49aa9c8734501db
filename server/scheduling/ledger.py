"""The vaccine dose ledger of a place (a Location, or a Practitioner with no Location).

Per place and vaccine: delivered (completed SupplyDeliveries), administered (completed
Immunizations), reserved (booked vaccination appointments not yet done, plus live holds) and
available = delivered - administered - reserved.

Delivered, administered and booked reservations are tallies the write rules keep in step with the
resources in the same transaction. Holds are tallied by the instant they end (`hold_tallies`) and
only those ending after now are counted, so an expired hold frees its dose without any job
running, and counting never lists Appointments: its cost does not grow with the number of
pending ones. A reservation takes a guard on (place, vaccine) first, so two concurrent
reservations of the last dose cannot both pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.fhir import outcome
from server.fhir.values import split_reference
from server.scheduling import hold_tallies
from server.scheduling.claims import claim_of, dose_reservation
from server.scheduling.queries import find_all
from server.scheduling.vocabulary import VACCINE_PRODUCT
from server.store.base import Reader, Transaction

MEASURES = ("delivered", "administered", "reserved")


@dataclass(frozen=True)
class Balance:
    vaccine: str  # "system|code"
    delivered: int = 0
    administered: int = 0
    reserved: int = 0

    @property
    def available(self) -> int:
        return self.delivered - self.administered - self.reserved


def key(place: str, vaccine: str, measure: str) -> str:
    return f"doses|{place}|{vaccine}|{measure}"


def guard_key(place: str, vaccine: str) -> str:
    """The one document every change of a (place, vaccine) balance writes (see `reserve`)."""
    return f"doses|{place}|{vaccine}"


def place_of(schedule: dict[str, Any], own_base: str) -> str | None:
    """The Schedule's Location actor, else its Practitioner actor, as "Type/id"."""
    actors = [_local(a.get("reference"), own_base) for a in schedule.get("actor", [])]
    for wanted in ("Location", "Practitioner"):
        for actor in actors:
            if actor and actor.startswith(f"{wanted}/"):
                return actor
    return None


def vaccine_of(schedule: dict[str, Any]) -> dict[str, Any] | None:
    """The Coding of the SMART Scheduling Links vaccine-product extension, if any."""
    for item in schedule.get("extension", []):
        if item.get("url") == VACCINE_PRODUCT and isinstance(item.get("valueCoding"), dict):
            coding: dict[str, Any] = item["valueCoding"]
            return coding if coding.get("code") else None
    return None


def vaccine_key(coding: dict[str, Any]) -> str:
    return f"{coding.get('system', '')}|{coding['code']}"


def delivered(resource: dict[str, Any] | None, own_base: str) -> Counter[tuple[str, str]]:
    """Doses a SupplyDelivery adds, per (place, vaccine): its quantity, once completed."""
    if not resource or resource.get("status") != "completed":
        return Counter()
    item = resource.get("suppliedItem", {})
    place = _local(resource.get("destination", {}).get("reference"), own_base)
    receivers = resource.get("receiver", [])
    if place is None and receivers:
        place = _local(receivers[0].get("reference"), own_base)
    quantity = item.get("quantity", {}).get("value", 0)
    if place is None or not isinstance(quantity, int | float):
        return Counter()
    if quantity < 0 or quantity != int(quantity):
        raise outcome.invalid_one(
            "A vaccine delivery's quantity is a whole number of doses",
            "SupplyDelivery.suppliedItem.quantity.value",
        )
    codings = item.get("itemCodeableConcept", {}).get("coding", [])
    return Counter({(place, vaccine_key(c)): int(quantity) for c in codings if c.get("code")})


def administered(resource: dict[str, Any] | None, own_base: str) -> Counter[tuple[str, str]]:
    """The dose a completed Immunization used, at its Location or else its performer."""
    if not resource or resource.get("status") != "completed":
        return Counter()
    place = _local(resource.get("location", {}).get("reference"), own_base)
    performers = resource.get("performer", [])
    if place is None and performers:
        place = _local(performers[0].get("actor", {}).get("reference"), own_base)
    if place is None:
        return Counter()
    codings = resource.get("vaccineCode", {}).get("coding", [])
    return Counter({(place, vaccine_key(c)): 1 for c in codings if c.get("code")})


async def record(
    tx: Transaction, measure: str, before: Counter[tuple[str, str]], after: Counter[tuple[str, str]]
) -> None:
    """Move the tallies of `measure` from what the previous version counted to the next. The
    place's guard is taken as a reservation takes it: a correction that lowers the balance and
    a booking of the last dose are never both committed on a stale count."""
    for place, vaccine in sorted(set(before) | set(after)):
        delta = after[(place, vaccine)] - before[(place, vaccine)]
        if delta:
            await tx.guard(guard_key(place, vaccine))
            await tx.tally(key(place, vaccine, measure), delta)


async def balances(
    reader: Reader, place: str, now: datetime, own_base: str, *, ignoring: str | None = None
) -> dict[str, Balance]:
    """The place's balance per vaccine; `ignoring` leaves one appointment's hold out."""
    counts: dict[str, Counter[str]] = {}
    for name, value in (await reader.tallies(f"doses|{place}|")).items():
        vaccine, _, measure = name[len(f"doses|{place}|") :].rpartition("|")
        counts.setdefault(vaccine, Counter())[measure] += value
    held = await hold_tallies.doses_held(reader, place, now)
    if ignoring is not None:
        held -= await _held_by(reader, ignoring, place, now, own_base)
    for vaccine, count in held.items():
        counts.setdefault(vaccine, Counter())["reserved"] += count
    return {
        vaccine: Balance(vaccine, **{m: count[m] for m in MEASURES})
        for vaccine, count in sorted(counts.items())
    }


async def offered(reader: Reader, place: str, own_base: str) -> set[str]:
    """The vaccines the place's Schedules offer (`vaccine-product`), "system|code": what its
    ledger lists even before any delivery, so that "offered, none available" shows."""
    schedules = await find_all(reader, own_base, "Schedule", [("actor", place)], limit=1000)
    return {
        vaccine_key(vaccine)
        for schedule in schedules
        if place_of(schedule.body or {}, own_base) == place
        and (vaccine := vaccine_of(schedule.body or {})) is not None
    }


async def reserve(
    tx: Transaction,
    place: str,
    vaccine: str,
    now: datetime,
    own_base: str,
    *,
    appointment_id: str | None,
) -> None:
    """Refuse (409) unless a dose of `vaccine` is available at `place`."""
    await tx.guard(guard_key(place, vaccine))
    balance = (await balances(tx, place, now, own_base, ignoring=appointment_id)).get(
        vaccine, Balance(vaccine)
    )
    if balance.available <= 0:
        raise outcome.conflict(
            f"No dose of vaccine {vaccine} is available at {place}: {balance.delivered} "
            f"delivered, {balance.administered} administered, {balance.reserved} reserved",
            code="business-rule",
        )


async def _held_by(
    reader: Reader, appointment_id: str, place: str, now: datetime, own_base: str
) -> Counter[str]:
    """The dose the stored version of one appointment holds at the place, if a live hold."""
    current = await reader.current("Appointment", appointment_id)
    body = current.body if current is not None else None
    reservation = dose_reservation(body) if body else None
    if reservation is None or reservation[0] != place:
        return Counter()
    return Counter({reservation[1]: 1}) if claim_of(body, now, own_base).holding else Counter()


def _local(reference: Any, own_base: str) -> str | None:
    if not isinstance(reference, str):
        return None
    kind, target = split_reference(reference, own_base)
    return f"{kind}/{target}" if kind and target else None
