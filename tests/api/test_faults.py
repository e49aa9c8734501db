"""Worker processes killed with SIGKILL in the middle of a storm of bookings, holds and
cancels: after a restart, every acknowledged booking is there, no slot has more takers than
seats, and the dose ledger equals a recount."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.faults import blow, broken_rules, set_scene
from tests.live import admin_token, serving


def _client(base: str, token: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=base, timeout=30, headers=headers)


async def test_killed_workers_lose_nothing_acknowledged_and_break_no_rule(tmp_path: Path) -> None:
    with serving(tmp_path, "--workers", "2") as (base, server):
        token = admin_token(tmp_path, base)
        async with _client(base, token) as client:
            scene = await set_scene(client, slots=12, doses=8, patients=5)
            storm = await blow(client, scene, server.pid, rounds=3, per_round=40)
    assert storm.answers["201"] and storm.answers["200"] and storm.answers["lost"], storm.answers
    with serving(tmp_path, "--workers", "2") as (base, _):
        async with _client(base, admin_token(tmp_path, base)) as client:
            assert await broken_rules(client, scene, storm) == []
