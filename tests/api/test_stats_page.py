"""The statistics page (`GET /stats`) in a real browser: Debian's Chromium, headless, driven by
Playwright, against a live server with auth on and a known data set. The page must draw the
figures the server computes (bars by department, a line by day, their tables), the small group
suppressed, with nothing fetched from anywhere but the server itself.

Chromium is installed by `make test` (the Makefile's `chromium` target). Without it this test
fails, so that CI cannot pass without running it; `CRENEAU_SKIP_BROWSER=1` skips it instead."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from server.stats.stamping import PARIS
from tests.api.scheduling_setup import TOMORROW, add_slots, booking
from tests.factories import (
    CONSULTATION,
    appointment_in,
    create,
    fresh_rpps,
    make_location,
    make_patient,
    make_practitioner,
    make_schedule,
    operate,
    ref,
)
from tests.live import admin_token, live_server

ARGUMENTS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
D1 = TOMORROW.astimezone(PARIS).date()
D2 = D1 + timedelta(days=1)
# (postal code, day, bookings): 12 in Paris and 10 in Lyon are shown, Marseille's 3 are not.
BOOKINGS = [("75020", TOMORROW, 12), ("69004", TOMORROW + timedelta(days=1), 10)]
BOOKINGS += [("13001", TOMORROW, 3)]
READY = "body[data-state=ready]"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium", path="/usr/bin:/usr/lib/chromium")
    if found:
        return found
    if os.environ.get("CRENEAU_SKIP_BROWSER") == "1":
        pytest.skip("Chromium is not installed and CRENEAU_SKIP_BROWSER=1")
    pytest.fail(
        "Chromium is not installed: `make test` installs Debian's package (the Makefile's "
        "chromium target); set CRENEAU_SKIP_BROWSER=1 to skip this test where it cannot be"
    )


async def _load(base: str, token: str) -> None:
    """A practice per postal code, its consultations booked on one slot of enough seats."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        patient = await create(client, make_patient())
        for postal_code, first, count in BOOKINGS:
            practitioner = await create(client, make_practitioner(fresh_rpps()))
            location = await create(client, make_location(postal_code=postal_code))
            schedule = await create(
                client,
                {
                    **make_schedule(ref(practitioner), serviceType=[CONSULTATION]),
                    "actor": [{"reference": ref(practitioner)}, {"reference": ref(location)}],
                },
            )
            (slot,) = await add_slots(client, schedule, 1, first=first, seats=count)
            for _ in range(count):
                reply = await operate(
                    client, "Appointment/$book", ("appt-resource", booking(slot, patient))
                )
                assert reply.status_code == 201, reply.text
                appointment_in(reply)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("stats-page")
    with live_server(data_dir) as base:
        asyncio.run(_load(base, admin_token(data_dir, base)))
        yield base


def _traces(page: Page, chart: str) -> dict[str, dict[str, Any]]:
    """The traces plotly drew in `chart`, by name: their x, y and text."""
    traces: list[dict[str, Any]] = page.evaluate(
        """(id) => document.getElementById(id).data.map(
            (t) => ({ name: t.name, x: t.x, y: t.y, text: t.text }))""",
        chart,
    )
    return {trace["name"]: trace for trace in traces}


def _rows(page: Page, table: str) -> dict[str, dict[str, str]]:
    rows: list[list[str]] = page.evaluate(
        """(id) => [...document.getElementById(id).rows].map(
            (row) => [...row.cells].map((cell) => cell.textContent))""",
        table,
    )
    head, *body = rows
    return {row[0]: dict(zip(head[1:], row[1:], strict=True)) for row in body}


def test_the_page_draws_the_known_figures(served: str) -> None:
    browser_path = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=ARGUMENTS)
        try:
            page = browser.new_page()  # no token: the statistics are open
            fetched: list[str] = []
            page.on("request", lambda request: fetched.append(request.url))
            page.goto(f"{served}/stats?from={D1}&to={D2}")
            page.wait_for_selector(READY, timeout=30_000)
            _check_charts(page)
            page.fill("#from", D2.isoformat())
            page.click("button[type=submit]")
            page.wait_for_selector(READY, timeout=30_000)
            assert _traces(page, "by-department")["booked"]["x"] == ["69"]
            assert page.evaluate("window.location.search") == f"?from={D2}&to={D2}"
        finally:
            browser.close()
    assert fetched and all(url.startswith(served) for url in fetched), fetched


def _check_charts(page: Page) -> None:
    bars = _traces(page, "by-department")["booked"]
    assert (bars["x"], bars["y"], bars["text"]) == (
        ["13", "69", "75"],
        [0, 10, 12],
        ["< 10", "10", "12"],
    )
    drawn = page.locator("#by-department .trace.bars .point path").count()
    assert drawn >= 2 * 2, drawn  # two traces, the bars of Lyon and Paris at least
    labels = page.locator("#by-department text.bartext").all_text_contents()
    assert {"< 10", "10", "12"} <= set(labels), labels
    line = _traces(page, "by-day")["booked"]
    assert (line["x"], line["y"], line["text"]) == ([str(D1), str(D2)], [12, 10], ["12*", "10"])
    assert page.locator("#by-day .scatterlayer .trace").count() >= 1
    by_department = _rows(page, "department-table")
    assert by_department["13"]["booked"] == "< 10"
    assert by_department["75"]["booked"] == "12"
    assert by_department["total"]["booked"] == "22*"  # Marseille's 3 are withheld everywhere
    assert _rows(page, "day-table")[str(D1)]["booked"] == "12*"
    services = page.locator("#service-type option").all_text_contents()
    assert "http://terminology.hl7.org/CodeSystem/service-type|124" in services
