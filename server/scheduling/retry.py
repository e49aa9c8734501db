"""Run a unit of scheduling work in one store transaction, again if a concurrent one won.

On MongoDB two transactions touching the same slot or ledger conflict and one is aborted; the
driver's `with_transaction` then runs the work again on fresh data and retries a commit whose
result is unknown (`MongoStore.run`). Business refusals (slot taken, no dose: code
`business-rule`) are answers, not retried. On SQLite writers are serialized and never conflict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from server.audit.trail import Trail
from server.store.base import Store, Transaction

T = TypeVar("T")


async def atomically(
    store: Store, work: Callable[[Transaction], Awaitable[T]], trail: Trail | None
) -> T:
    """`work` in one transaction, audited by `trail` (its AuditEvent commits with the work)."""
    return await (trail.run(store, work) if trail else store.run(work))
