"""Run a unit of scheduling work in one store transaction, again if a concurrent one won.

On MongoDB two transactions touching the same slot or ledger conflict and one is aborted (409,
code `conflict`); the work is then simply run again on fresh data, a few times. Business refusals
(slot taken, no dose: code `business-rule`) are answers, not retried. On SQLite writers are
serialized and never conflict.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.fhir import outcome
from server.store.base import Store, Transaction

T = TypeVar("T")
ATTEMPTS = 5


async def atomically(store: Store, work: Callable[[Transaction], Awaitable[T]]) -> T:
    attempt = 0
    while True:
        try:
            async with store.transaction() as tx:
                return await work(tx)
        except outcome.FhirError as error:
            attempt += 1
            if not _lost_race(error) or attempt == ATTEMPTS:
                raise
        await asyncio.sleep(0.002 * 2**attempt * random.random())


def _lost_race(error: outcome.FhirError) -> bool:
    return error.status == 409 and all(issue.code == "conflict" for issue in error.issues)
