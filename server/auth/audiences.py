"""Slot audiences: whom an owner publishes a slot for, and which apps act for whom.

The SAS (the French national platform for access to care) lets an owner say who may see each
slot, with `meta.security` codes of the TRE-R314 "type de créneau" code system: `PUBLIC` (any
patient), `PRO` (health professionals), `SNP` (regulators of unscheduled care), `CPTS` (the
local health communities). A slot that carries none is public.

An app acts for the public; an owner's grant may add the audiences it acts for in that owner's
schedules (`audience` in `$grant`), so a regulator's app sees the owner's `SNP` slots and a
patient portal does not. This is decided in the store query like every other access rule: each
Slot is labelled `AUDIENCE|<code>@<owner>` for each of its audiences and owners (see `labels`),
and a client's Slot search matches the labels of the audiences it acts for.
"""

from __future__ import annotations

from typing import Any

TYPE_CRENEAU = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
PUBLIC = "PUBLIC"
CODES = frozenset({PUBLIC, "PRO", "SNP", "CPTS"})
LABEL = "https://fhir.creneau.org/CodeSystem/owner-audience"


def of_slot(body: dict[str, Any] | None) -> frozenset[str]:
    """The audiences a Slot is published for: its TRE-R314 codes, or the public."""
    security = (body or {}).get("meta", {}).get("security", [])
    codes = frozenset(
        str(c.get("code"))
        for c in security
        if isinstance(c, dict) and c.get("system") == TYPE_CRENEAU and c.get("code")
    )
    return codes or frozenset({PUBLIC})


def label_codes(owner_refs: frozenset[str], audiences: frozenset[str]) -> list[str]:
    """`<audience>@<owner>` for each pair: the codes a Slot is labelled with."""
    return [f"{a}@{o}" for o in sorted(owner_refs) for a in sorted(audiences)]


def visible_codes(discover: frozenset[str], acts_for: dict[str, frozenset[str]]) -> list[str]:
    """The labels a client's Slot search matches: the public slots of the owners it may
    discover, and the slots for the audiences it acts for in each owner's schedules."""
    codes = {f"{PUBLIC}@{owner}" for owner in discover}
    for owner, audiences in acts_for.items():
        if owner in discover:
            codes.update(f"{a}@{owner}" for a in audiences)
    return sorted(codes)
