"""What the operator configures about scheduling, and the clock it runs on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.scheduling import national_identifiers
from server.scheduling.vocabulary import DEFAULT_VACCINATION_CODES


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Policy:
    """`clock` is injectable so that hold expiry can be tested without waiting;
    `national_identifier_systems`: the identifier systems unique per resource type
    (`national_identifiers`)."""

    hold: timedelta = timedelta(minutes=5)
    vaccination_codes: frozenset[str] = frozenset(DEFAULT_VACCINATION_CODES)
    clock: Callable[[], datetime] = utc_now
    national_identifier_systems: frozenset[str] = frozenset(national_identifiers.DEFAULT_SYSTEMS)

    def now(self) -> datetime:
        return self.clock()

    def is_vaccination(self, service_types: list[dict[str, object]]) -> bool:
        """True if any coding of any service type is one of the vaccination codes."""
        return any(
            f"{coding.get('system')}|{coding.get('code')}" in self.vaccination_codes
            for concept in service_types
            for coding in _codings(concept)
        )


def _codings(concept: object) -> list[dict[str, object]]:
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return [c for c in codings if isinstance(c, dict)]
