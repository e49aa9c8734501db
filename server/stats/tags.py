"""The stat tags: what a resource is counted as in the open statistics, kept in its `meta.tag`.

Six code systems of ours. A counted resource (an Appointment, an Immunization, a
SupplyDelivery) carries one code of each of the five that make its *cell* (day, department,
service type, vaccine, measure), and a delivery the doses it counts for. The server computes
them on every write (`stamping`) and replaces whatever a client sent under these systems, on
every resource type, so no client can add to or move a figure. Stored in the resource, they are
indexed by the standard `_tag` search parameter: that is what the stores aggregate over
(`server.store.base.Tabulation`), with no appointment ever loaded.
"""

from __future__ import annotations

from typing import Any

CANONICAL = "https://fhir.creneau.org/CodeSystem"
DAY = f"{CANONICAL}/stat-day"  # YYYY-MM-DD, in Europe/Paris
DEPARTMENT = f"{CANONICAL}/stat-department"  # INSEE code: 01-95, 2A, 2B, 971-976
SERVICE_TYPE = f"{CANONICAL}/stat-service-type"  # system|code of the service type
VACCINE = f"{CANONICAL}/stat-vaccine"  # system|code of the vaccine
MEASURE = f"{CANONICAL}/stat-measure"  # what the resource counts for (below)
DOSES = f"{CANONICAL}/stat-doses"  # a delivery's doses, a whole number
OURS = frozenset({DAY, DEPARTMENT, SERVICE_TYPE, VACCINE, MEASURE, DOSES})
CELL = (DAY, DEPARTMENT, SERVICE_TYPE, VACCINE, MEASURE)
NONE = "none"  # no department known, no service type, no vaccine

BOOKED = "booked"
CANCELLED = "cancelled"
NOSHOW = "noshow"
FULFILLED = "fulfilled"
ADMINISTERED = "doses-administered"
DELIVERED = "doses-delivered"

Body = dict[str, Any]


def of(body: Body | None, system: str) -> str | None:
    """The code the body carries under one of our systems, if any."""
    for coding in (body or {}).get("meta", {}).get("tag", []):
        if isinstance(coding, dict) and coding.get("system") == system:
            code = coding.get("code")
            return code if isinstance(code, str) else None
    return None


def with_tags(body: Body, codes: dict[str, str]) -> Body:
    """The body with exactly these stat tags (system → code), the client's other tags kept."""
    meta = body.get("meta", {})
    tags = meta.get("tag", [])
    kept = [c for c in tags if not (isinstance(c, dict) and c.get("system") in OURS)]
    ours = [{"system": system, "code": code} for system, code in codes.items()]
    if not ours and len(kept) == len(tags):
        return body  # nothing of ours before or after: the body as it came
    meta = {k: v for k, v in meta.items() if k != "tag"}
    if kept or ours:
        meta["tag"] = kept + ours
    return {**body, "meta": meta}
