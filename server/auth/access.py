"""What one caller may see and change, from its token and its owners' grants. Closed by default.

    kind of resource       a non-admin client sees it when
    directory              always (Practitioner, Organization, Location, ...: public facts)
    Schedule, Slot         an owner is the client's own, or granted it discover, book or manage
                             (a Slot also: published for the public or an audience the owner's
                             grant says the client acts for, see `audiences`)
    Appointment, Patient,  the client booked or created it, or an owner is its own or granted
      Communication          it manage
    trail and ledger       an owner is its own or granted it manage (AuditEvent, Provenance,
                             SupplyDelivery, Immunization, grants)
    anything else          never: admin clients only

Searches are filtered in the store query (`search_filter`), reads and includes by the same rule
on the body (`can_read`): both read the resource's access labels (`labels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.auth import audiences, labelling, labels, owners, remote
from server.auth.caller import Caller
from server.auth.grants import Grant
from server.fhir import outcome
from server.fhir.search import Match
from server.store.base import Reader

DIRECTORY = frozenset(
    {
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "HealthcareService",
        "Endpoint",
        "Medication",
    }
)
DISCOVERABLE = frozenset({"Schedule", "Slot"})
PERSONAL = frozenset({"Appointment", "Patient", "Communication", "AppointmentResponse"})
OWNERS_ONLY = frozenset({"AuditEvent", "Provenance", "SupplyDelivery", "Immunization", "Basic"})
OWNER_WRITTEN = frozenset({"Schedule", "Slot", "SupplyDelivery", "Immunization"})
CLIENT_WRITTEN = frozenset({"Appointment", "Patient"})
NOTHING = labels.match(frozenset())

Body = dict[str, Any]


@dataclass(frozen=True)
class Access:
    caller: Caller
    manage: frozenset[str] = frozenset()  # owners it acts for: its own, and manage grants
    book: frozenset[str] = frozenset()  # ... and book grants
    discover: frozenset[str] = frozenset()  # ... and discover grants, to it or to everyone
    quotas: dict[str, int] = field(default_factory=dict)  # owner -> bookings a day
    acts_for: dict[str, frozenset[str]] = field(default_factory=dict)  # owner -> audiences

    @classmethod
    def of(cls, caller: Caller, grants: list[Grant], now: str) -> Access:
        live = [g for g in grants if g.live(now)]
        mine = [g for g in live if g.client == caller.client_id]

        def granted(code: str, pool: list[Grant]) -> frozenset[str]:
            return frozenset(g.owner for g in pool if code in g.access)

        manage = caller.owners | granted("manage", mine)
        book = manage | granted("book", mine)
        quotas = {g.owner: g.quota for g in mine if g.quota is not None}
        acts_for = {g.owner: g.audience for g in mine if g.audience}
        discover = book | granted("discover", live) | {remote.PUBLISHER}  # published for all
        return cls(caller, manage, book, discover, quotas, acts_for)

    @property
    def admin(self) -> bool:
        return self.caller.admin

    @property
    def client_id(self) -> str:
        return self.caller.client_id

    # reading

    def filter(self, resource_type: str) -> Match | None:
        """The condition a search of this type gets; None when nothing is hidden."""
        if self.admin or resource_type in DIRECTORY:
            return None
        if resource_type == "Slot":
            visible = audiences.visible_codes(self.discover, self.acts_for)
            return labels.match(self.manage, audience_codes=tuple(visible))
        if resource_type in DISCOVERABLE:
            return labels.match(self.discover)
        if resource_type in PERSONAL:
            return labels.match(self.manage, frozenset({self.client_id}))
        if resource_type in OWNERS_ONLY:
            return labels.match(self.manage)
        return NOTHING

    def search_filter(self, resource_type: str) -> Match | None:
        """`filter`, and nothing at all of a type the token may not search (chains, `_has`)."""
        if not self.caller.scopes.allows(resource_type, "s"):
            return NOTHING
        return self.filter(resource_type)

    def can_read(self, resource_type: str, body: Body | None) -> bool:
        if self.admin or resource_type in DIRECTORY:
            return True
        owner_refs = labels.owners(body)
        if resource_type == "Slot":
            visible = audiences.visible_codes(self.discover, self.acts_for)
            return bool(owner_refs & self.manage) or bool(
                labels.owner_audiences(body) & set(visible)
            )
        if resource_type in DISCOVERABLE:
            return bool(owner_refs & self.discover)
        if resource_type in PERSONAL:
            return bool(owner_refs & self.manage) or self.client_id in labels.clients(body)
        if resource_type in OWNERS_ONLY:
            return bool(owner_refs & self.manage)
        return False

    def can_include(self, resource_type: str, body: Body | None) -> bool:
        """An included resource shows if the token may read its type and the client see it."""
        return self.caller.scopes.allows(resource_type, "r") and self.can_read(resource_type, body)

    def readable(self, resource_type: str, resource_id: str, body: Body | None) -> None:
        """404, as for a resource that does not exist: never confirm what may not be seen."""
        if not self.can_read(resource_type, body):
            raise outcome.not_found(f"{resource_type}/{resource_id} not found")

    # deciding

    def may_manage(self, owner_refs: frozenset[str]) -> bool:
        return self.admin or bool(owner_refs & self.manage)

    def may_book(self, owner_refs: frozenset[str]) -> bool:
        return self.admin or bool(owner_refs & self.book)

    def require_manage(self, owner_refs: frozenset[str], what: str) -> None:
        if not self.may_manage(owner_refs):
            raise forbidden(
                f"Client {self.client_id} may not change {what}: that needs its owner's "
                "own client, or a manage grant from its owner"
            )

    async def check_write(
        self, reader: Reader, previous: Body | None, body: Body | None, own_base: str
    ) -> None:
        """A client's own write (REST or Bundle entry): may it change this resource so?

        Booking rules (a `book` grant for each slot taken, the daily quota) are the scheduling
        rules' part, since every path that takes a slot goes through them. Another
        publisher's resources (`remote`) are read-only to every client, admins included."""
        if remote.is_remote(previous) or remote.is_remote(body):
            name = remote.source_of(previous) or remote.source_of(body)
            raise forbidden(f"Resources of the source {name!r} are its publisher's: read-only here")
        if self.admin:
            return
        kind = (body or previous or {}).get("resourceType", "")
        ident = (body or previous or {}).get("id", "")
        if previous is not None:
            self.readable(kind, ident, previous)
        if kind in OWNER_WRITTEN:
            for version in (previous, body):
                if version is not None:
                    stamped = await labelling.label(reader, None, version, "", own_base)
                    self.require_manage(labels.owners(stamped), f"{kind}/{ident}")
        elif kind in DIRECTORY:
            for version in (previous, body):
                if version is not None:
                    found = await owners.of_directory(reader, version, own_base)
                    self.require_manage(found, f"{kind}/{ident}")
        elif kind not in CLIENT_WRITTEN:
            raise forbidden(f"{kind} is written by the server or an admin client only")

    async def check_patients(
        self, reader: Reader, previous: Body | None, body: Body, own_base: str
    ) -> None:
        """An app books only for patients it may read: naming another app's patient in an
        appointment would otherwise hand it that patient's record."""
        if self.admin:
            return
        known = {
            p.get("actor", {}).get("reference") for p in (previous or {}).get("participant", [])
        }
        for participant in body.get("participant", []):
            actor = owners.local(participant.get("actor"), own_base)
            if actor and actor.startswith("Patient/") and actor not in known:
                current = await reader.current("Patient", actor.split("/")[1])
                if current is None or not self.can_read("Patient", current.body):
                    raise outcome.invalid_one(
                        f"{actor} is not a Patient this client may book for",
                        "Appointment.participant",
                    )


def forbidden(message: str) -> outcome.FhirError:
    return outcome.FhirError(403, [outcome.Issue("forbidden", message)])


def everything(caller: Caller) -> Access:
    """The access of the server's own work (fixtures) and of admin clients."""
    return Access(caller)
