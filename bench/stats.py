"""Open statistics benchmark on the embedded store: a day of national data, then the figures.

Loads the record day of the vaccination campaign: APPOINTMENTS booked appointments (200,000 by
default) on one day across the 101 departments, at SITES_PER_DEPARTMENT vaccination sites (a
Location and a vaccination Schedule each, two vaccines) and GPS_PER_DEPARTMENT practitioners
(a consultation Schedule naming the Practitioner and his address, no Location), with a delivery
per site; `--days N` adds as many other days of the same size around it, to show the window
narrowing the work. Everything is written through the store's own write API
(`server.store.writes.create_many`, BATCH resources a transaction) with the stat tags stamped as
the scheduling rules stamp them (`server.stats.stamping`: slot, Schedule and place read by key
for each appointment), not through HTTP.

Then times `server.stats.figures.compute` (what `GET /stats/appointments` runs: two store
tabulations) for the record day, grouped as public health asks, best of ROUNDS runs, and prints
the figures' size and totals.

    python bench/stats.py [--appointments 200000] [--days 0]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from server.stats import figures, stamping
from server.stats.inquiry import Inquiry
from server.store import writes
from server.store.base import Transaction, Version
from server.store.sqlite import SqliteStore

BASE = "http://bench/fhir"
SITES_PER_DEPARTMENT = 15
GPS_PER_DEPARTMENT = 5
SLOTS_PER_SCHEDULE = 12  # one an hour, 08:00 to 20:00 (capacity is not what is measured)
VACCINATION_SHARE = 0.8
BATCH = 5000
ROUNDS = 3
DAY = date(2021, 5, 12)  # the record day is a Wednesday
SERVICE = "http://terminology.hl7.org/CodeSystem/service-type"
VACCINES = [
    {"system": "http://hl7.org/fhir/sid/cvx", "code": "208"},
    {"system": "http://hl7.org/fhir/sid/cvx", "code": "207"},
]
SMART = "http://fhir-registry.smarthealthit.org/StructureDefinition/vaccine-product"
GROUPINGS = [
    ("department",),
    ("department", "service-type"),
    ("department", "vaccine"),
    ("day",),
    ("department", "vaccine", "day"),
]
Body = dict[str, Any]


def departments() -> list[str]:
    """A postal code in each of the 101 departments."""
    mainland = [f"{n:02d}000" for n in range(1, 96) if n != 20]
    return [*mainland, "20000", "20200", "97100", "97200", "97300", "97400", "97600"]


class Stamped:
    """Write rules that stamp the stat tags only: the bench loads, it does not book."""

    async def before(self, tx: Transaction, previous: Body | None, body: Body | None) -> Any:
        return await stamping.stamp(tx, previous, body, BASE)

    async def after(self, tx: Transaction, previous: Body | None, version: Version) -> None:
        return None


async def write(store: SqliteStore, bodies: list[Body]) -> list[Version]:
    written: list[Version] = []
    for start in range(0, len(bodies), BATCH):
        batch = bodies[start : start + BATCH]

        async def work(tx: Transaction, batch: list[Body] = batch) -> list[Version]:
            return await writes.create_many(tx, batch, own_base=BASE, rules=Stamped())

        written += await store.run(work)
    return written


def ref(version: Version) -> dict[str, str]:
    return {"reference": f"{version.type}/{version.id}"}


async def places(store: SqliteStore) -> tuple[list[Version], list[Version], list[Version]]:
    """(Locations, vaccination Schedules, consultation Schedules), in department order."""
    locations, practitioners = [], []
    for postal_code in departments():
        address = {"postalCode": postal_code, "country": "FR"}
        locations += [{"resourceType": "Location", "address": address}] * SITES_PER_DEPARTMENT
        practitioners += [{"resourceType": "Practitioner", "address": [address]}] * (
            GPS_PER_DEPARTMENT
        )
    sites, gps = await write(store, locations), await write(store, practitioners)
    vaccinations = await write(
        store,
        [_schedule(site, "57", VACCINES[n % len(VACCINES)]) for n, site in enumerate(sites)],
    )
    consultations = await write(store, [_schedule(gp, "124", None) for gp in gps])
    return sites, vaccinations, consultations


def _schedule(actor: Version, service: str, vaccine: dict[str, str] | None) -> Body:
    schedule: Body = {
        "resourceType": "Schedule",
        "active": True,
        "actor": [ref(actor)],
        "serviceType": [{"coding": [{"system": SERVICE, "code": service}]}],
    }
    if vaccine is not None:
        schedule["extension"] = [{"url": SMART, "valueCoding": vaccine}]
    return schedule


async def slots(store: SqliteStore, schedules: list[Version], day: date) -> list[Version]:
    bodies = []
    for schedule in schedules:
        for hour in range(8, 8 + SLOTS_PER_SCHEDULE):
            start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC) - timedelta(hours=2)
            bodies.append(
                {
                    "resourceType": "Slot",
                    "schedule": ref(schedule),
                    "status": "busy",
                    "start": start.isoformat(),
                    "end": (start + timedelta(hours=1)).isoformat(),
                    "serviceType": (schedule.body or {}).get("serviceType"),
                }
            )
    return await write(store, bodies)


def appointments(vaccination: list[Version], consultation: list[Version], count: int) -> list[Body]:
    """`count` booked appointments, VACCINATION_SHARE of them vaccinations, spread round the
    slots of each kind."""
    vaccinations = int(count * VACCINATION_SHARE)
    chosen = [vaccination[n % len(vaccination)] for n in range(vaccinations)]
    chosen += [consultation[n % len(consultation)] for n in range(count - vaccinations)]
    return [
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": (slot.body or {})["start"],
            "end": (slot.body or {})["end"],
            "serviceType": (slot.body or {})["serviceType"],
            "slot": [ref(slot)],
            "participant": [{"actor": {"reference": f"Patient/p{n}"}, "status": "accepted"}],
        }
        for n, slot in enumerate(chosen)
    ]


def deliveries(sites: list[Version], vaccinations: list[Version], day: date) -> list[Body]:
    return [
        {
            "resourceType": "SupplyDelivery",
            "status": "completed",
            "destination": ref(site),
            "occurrenceDateTime": day.isoformat(),
            "suppliedItem": {
                "quantity": {"value": 600},
                "itemCodeableConcept": {
                    "coding": [(schedule.body or {})["extension"][0]["valueCoding"]]
                },
            },
        }
        for site, schedule in zip(sites, vaccinations, strict=True)
    ]


async def load(store: SqliteStore, count: int, days: list[date]) -> None:
    started = time.perf_counter()
    sites, vaccinations, consultations = await places(store)
    for day in days:
        vaccination_slots = await slots(store, vaccinations, day)
        consultation_slots = await slots(store, consultations, day)
        await write(store, appointments(vaccination_slots, consultation_slots, count))
        await write(store, deliveries(sites, vaccinations, day))
        print(f"  {day}: {count} appointments written ({time.perf_counter() - started:.0f} s)")
    print(
        f"loaded: {len(sites)} sites, {len(consultations)} practitioners, "
        f"{count * len(days)} appointments in {time.perf_counter() - started:.1f} s"
    )


async def measure(store: SqliteStore) -> None:
    print(f"\n{'group-by':<28} {'best of ' + str(ROUNDS):>10} {'groups':>7} {'booked':>8}")
    for grouping in GROUPINGS:
        asked = Inquiry(DAY, DAY, grouping)
        times = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            table = await figures.compute(store, asked, threshold=10)
            times.append(time.perf_counter() - started)
        booked = table.value("booked", table.total()["booked"])
        print(f"{','.join(grouping):<28} {min(times):>9.3f}s {len(table.groups):>7} {booked:>8}")
    wide = Inquiry(DAY - timedelta(days=30), DAY + timedelta(days=30), ("department", "day"))
    started = time.perf_counter()
    table = await figures.compute(store, wide, threshold=10)
    print(
        f"{'department,day (61 days)':<28} {time.perf_counter() - started:>9.3f}s "
        f"{len(table.groups):>7}"
    )


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="creneau-stats-"))
    store = SqliteStore(folder / "creneau.sqlite", own_base=BASE)
    await store.open()
    try:
        days = [
            DAY + timedelta(days=n)
            for n in range(-(args.days // 2), args.days - args.days // 2 + 1)
        ]
        await load(store, args.appointments, days)
        size = (folder / "creneau.sqlite").stat().st_size
        print(f"store: {size / 2**20:.0f} MiB")
        await measure(store)
    finally:
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appointments", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=0, help="other days around the record one")
    asyncio.run(main(parser.parse_args()))
