"""Caps on the work one request may make the server do, so that no small request can stall it.

Each cap is set from the environment as `CRENEAU_LIMIT_<NAME>` (e.g. `CRENEAU_LIMIT_BUNDLE_ENTRIES`)
and documented in docs/limits.md with what a request beyond it is answered. The API layer reads
them from the settings and passes them down; nothing reads them from a global.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Limits:
    request_seconds: float = 30.0  # a request still running after this is answered 503
    bundle_entries: int = 1000  # entries in one batch or transaction Bundle
    patch_operations: int = 100  # operations in one JSON Patch (alone or in a Bundle entry)
    patch_result_bytes: int = 2 * 1024 * 1024  # a patched resource's JSON, grown op by op
    min_slot_minutes: int = 5  # an availability rule's shortest slot length
    generation_horizon_days: int = 92  # the farthest ahead slots are generated (at most 366)
    generated_slots: int = 20_000  # slots one Schedule's rules may describe per generation
    slots_per_appointment: int = 8  # the slots one Appointment may take (hold or book)
    search_params: int = 50  # parameters of one search, counted before any is parsed
    or_values: int = 100  # comma-separated values (OR) of one search parameter
    value_chars: int = 1024  # characters of one search value
    chain_depth: int = 4  # links of one chained or _has parameter (`a.b.c`: 2)
    chain_matches: int = 5000  # resources a chained or _has condition may match
    sort_keys: int = 5  # keys of _sort
    page_size: int = 1000  # the largest page; a larger _count gets this many (FHIR allows)
    include_params: int = 10  # _include and _revinclude parameters of one search
    included: int = 1000  # resources _include and _revinclude may add to one page
    find_window_days: int = 31  # the longest window (end - start) of one $find
    find_count: int = 500  # the most proposals one $find may ask for (_count)
    find_schedules: int = 100  # Schedules whose time lines one $find reads; beyond: the window
    find_slots: int = 2000  # Slots one $find reads, at most
    holds_per_client: int = 50  # live holds on slots one client may have at once


def limits_from_env(env: Mapping[str, str]) -> Limits:
    """The defaults, with each `CRENEAU_LIMIT_<NAME>` found in `env` applied."""
    overrides: dict[str, object] = {}
    for cap in fields(Limits):
        value = env.get(f"CRENEAU_LIMIT_{cap.name.upper()}")
        if value:
            overrides[cap.name] = _parse(cap.type, value)
    return replace(Limits(), **overrides)  # type: ignore[arg-type]


def limits_to_env(limits: Limits) -> dict[str, str]:
    return {
        f"CRENEAU_LIMIT_{cap.name.upper()}": str(getattr(limits, cap.name))
        for cap in fields(Limits)
    }


def _parse(kind: object, value: str) -> object:
    return float(value) if kind in (float, "float") else int(value)
