"""The fault test of tests/api/test_faults.py at a larger size: a live `creneau serve` with one
worker per core on the embedded store, ROUNDS bursts of PER_ROUND concurrent bookings, holds and
cancels, a worker process killed with SIGKILL in each burst, then a restart and the checks
(every acknowledged booking present, no slot over capacity, the dose ledger equal to a recount).
Prints what was answered and what the checks found; exits non-zero on a broken rule.

    python bench/faults.py [--rounds 20] [--per-round 100] [--slots 200] [--doses 150]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.faults import blow, broken_rules, set_scene
from tests.live import admin_token, serving


def _client(base: str, token: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=base, timeout=60, headers=headers)


async def main(args: argparse.Namespace) -> int:
    folder = Path(tempfile.mkdtemp(prefix="creneau-faults-"))
    workers = str(os.cpu_count() or 1)
    with serving(folder, "--workers", workers) as (base, server):
        async with _client(base, admin_token(folder, base)) as client:
            scene = await set_scene(client, args.slots, args.doses, patients=20)
            began = time.perf_counter()
            storm = await blow(
                client, scene, server.pid, rounds=args.rounds, per_round=args.per_round
            )
            took = time.perf_counter() - began
    print(f"storm: {args.rounds} bursts of {args.per_round} on {workers} workers in {took:.1f} s")
    print(f"answers: {dict(storm.answers)}; {len(storm.booked)} bookings acknowledged")
    with serving(folder, "--workers", workers) as (base, _):
        async with _client(base, admin_token(folder, base)) as client:
            problems = await broken_rules(client, scene, storm)
    print("after restart:", "every rule holds" if not problems else "\n  ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--slots", type=int, default=200)
    parser.add_argument("--doses", type=int, default=150)
    sys.exit(asyncio.run(main(parser.parse_args())))
