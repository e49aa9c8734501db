"""AuditEvents written apart from any change: refusals (their transaction rolled back, or never
began) and, when `CRENEAU_AUDIT_READS=1`, reads.

They are queued in memory and written in batches by a background task, so that a storm of
anonymous 401s does not take the store's write lock once per request. The queue is bounded:
past `limit`, events are counted, and the count is written as one event of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from server.audit.events import FAILED, OBSERVER, Action, audit_event
from server.audit.trail import record
from server.fhir.values import format_instant
from server.store.base import Store

Body = dict[str, Any]
log = logging.getLogger("creneau.audit")
LIMIT = 1000  # events waiting at most; the rest are counted
BATCH = 200  # events per store transaction


class AuditQueue:
    def __init__(
        self, store: Store, own_base: str, clock: Callable[[], datetime], limit: int = LIMIT
    ) -> None:
        self.store, self.own_base, self.clock, self.limit = store, own_base, clock, limit
        self._waiting: deque[Body] = deque()
        self._dropped = 0

    def put(self, event: Body) -> None:
        if len(self._waiting) >= self.limit:
            self._dropped += 1
        else:
            self._waiting.append(event)

    async def flush(self) -> int:
        """Write what waits; the number of events written."""
        if self._dropped:
            self._waiting.append(self._overflow(self._dropped))
            self._dropped = 0
        written = 0
        while self._waiting:
            batch = [self._waiting.popleft() for _ in range(min(BATCH, len(self._waiting)))]
            try:
                async with self.store.transaction() as tx:
                    for event in batch:
                        await record(tx, event, self.own_base)
            except BaseException:
                self._waiting.extendleft(reversed(batch))  # kept for the next flush
                raise
            written += len(batch)
        return written

    async def run(self, interval: float) -> None:
        """Flush every `interval` seconds until cancelled; a failed write is logged (and its
        events kept for the next), never raised."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
            except Exception:
                log.exception("Audit events could not be written")

    def _overflow(self, count: int) -> Body:
        event = audit_event(
            Action("operation", "audit-overflow"),
            None,
            recorded=format_instant(self.clock()),
            outcome=FAILED,
            entities=[],
            description=f"{count} refused or read request(s) were not audited one by one: "
            "the audit queue was full",
        )
        return {**event, "agent": [{"who": OBSERVER, "requestor": False}]}
