"""Polling the registered sources in the background, each when it is due.

Every `every` seconds (`CRENEAU_FEDERATION_POLL_SECONDS`; 0: no background polling, as in the
tests, which poll directly), each worker looks at the sources and polls those whose
`next_poll` has come: their publisher's `Cache-Control: max-age`, at least a minute, after a
good poll; a minute doubling up to an hour after failed ones. A short lease (a store record
that expires, taken atomically) keeps two workers from polling one source at once.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from server.federation import consumer, sources
from server.scheduling.rules import SchedulingRules
from server.store.base import Store

log = logging.getLogger(__name__)
LEASE = "federation-lease"
LEASE_SECONDS = consumer.MIN_INTERVAL - 5


async def poll_one(
    store: Store, http: httpx.AsyncClient, rules: SchedulingRules, source: sources.Source
) -> sources.Status:
    """Poll the source now and keep its status."""
    before = await sources.status(store, source.name)
    after = await consumer.poll(store, http, rules, source, before)
    await sources.save_status(store, source.name, after)
    return after


async def poll_due(store: Store, http: httpx.AsyncClient, rules: SchedulingRules) -> int:
    """Poll every source that is due and not leased by another worker; how many were polled."""
    now = rules.policy.now().timestamp()
    polled = 0
    for source in await sources.list_all(store):
        if (await sources.status(store, source.name)).next_poll > now:
            continue
        if not await store.add_record(LEASE, source.name, {}, now + LEASE_SECONDS):
            continue
        await poll_one(store, http, rules, source)
        polled += 1
    return polled


async def run(store: Store, http: httpx.AsyncClient, rules: SchedulingRules, every: float) -> None:
    """Poll what is due every `every` seconds, for ever (a task of each worker)."""
    while True:
        await asyncio.sleep(every)
        try:
            await poll_due(store, http, rules)
        except Exception:  # the store away for a while: the next round tries again
            log.exception("polling the federation sources failed")
