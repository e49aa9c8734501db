"""The French department of a place: how the Slot files are split.

A Location's department is that of its address's postal code, read as the open statistics read
it (`server.stats.departments`: INSEE codes, `2A` and `2B` in Corsica, three digits overseas), so
that a place counts in the same department in the statistics and in the publication. The
manifest names a department as an ISO 3166-2 style jurisdiction, `FR-75`, in the
`extension.state` of its Slot files.
"""

from __future__ import annotations

from typing import Any

from server.stats.departments import of_address

UNKNOWN = "none"  # the Slot files of the places with no French postal code


def of_location(location: dict[str, Any] | None) -> str | None:
    return of_address((location or {}).get("address"))


def jurisdiction(department: str) -> str:
    """`FR-75`: the department as the manifest's `extension.state` names it."""
    return f"FR-{department}"
