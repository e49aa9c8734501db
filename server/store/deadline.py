"""The time budget of the request being served, checked before each store statement.

The API layer opens a budget per request (`budget`); the stores call `check` before every read
and every statement of a transaction, never before a commit. A runaway request (thousands of
reads, a long wait for the write lock) thus stops at its next statement with a 503 and its
transaction rolls back, while a write that reached its commit is never answered as a failure.
Work that never reaches the store cannot be stopped this way: its bound comes from the caps in
`server.limits`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from server.fhir import outcome

RETRY_AFTER_SECONDS = 5
ROLLED_BACK = "what it had not committed was rolled back"
_deadline: ContextVar[float] = ContextVar("deadline", default=math.inf)


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Work of the current task (and the tasks it starts) must end within `seconds`; 0: none."""
    token = _deadline.set(time.monotonic() + seconds if seconds > 0 else math.inf)
    try:
        yield
    finally:
        _deadline.reset(token)


def check() -> None:
    """Refuse to go on with a request past its budget."""
    if time.monotonic() > _deadline.get():
        raise outcome.FhirError(
            503,
            [
                outcome.Issue(
                    "transient",
                    "The request ran past its time budget; its unfinished work was rolled back",
                )
            ],
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
