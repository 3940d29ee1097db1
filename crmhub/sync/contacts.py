"""Which CRM record is a person's: an existing link, else the mirror.

Matching reads only the local mirror (no API call). When several records of
one CRM match, the person is linked to all of them, the oldest is written to,
and the conflict is flagged: merging them is an admin's decision, never
crmhub's. A first link also re-points what was written before it (backfill).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from crmhub.model import Identity, IdentityKind
from crmhub.store import graph
from crmhub.sync.blocklist import Blocklist


@dataclass(frozen=True)
class ContactMatch:
    """A person's record in one CRM and the mirrored fields routing may look at."""

    record_id: str
    object_type: str
    fields: Mapping[str, Any]


def contact_for(session: Session, person_id: int, crm: str, *, now: datetime,
                blocklist: Blocklist = Blocklist(), on_linked: Callable[[int, str], None] | None = None
                ) -> ContactMatch | None:
    """The person's record in `crm`, linking it on first match; None when unknown there.

    Blocked (shared) identities never match: they would put one caller's
    history on whichever customer happens to hold the switchboard number.
    """
    usable = blocklist.usable(graph.identities_of(session, person_id))
    links = graph.links_of(session, person_id, crm)
    linked = {link.record_id for link in links}
    added = False
    for match in graph.mirror_matches(session, crm, matchable(usable)):
        if match.record_id not in linked:
            link = graph.add_link(session, person_id, crm, match.object_type, match.record_id, now=now)
            added = added or link.person_id == person_id  # a record linked to another person stays theirs
    if added:
        if on_linked is not None:  # flags several records, re-points earlier writes
            on_linked(person_id, crm)
        links = graph.links_of(session, person_id, crm)  # the primary may have changed
    if not links:
        return None
    primary = links[0]
    mirrored = graph.mirror_record(session, crm, primary.record_id)
    return ContactMatch(primary.record_id, primary.object_type, mirrored.fields if mirrored else {})


def matchable(identities: list[Identity]) -> list[Identity]:
    """Identities as the mirror indexes them: an X account also by its handle."""
    extra = [Identity(IdentityKind.X_HANDLE, i.display) for i in identities
             if i.kind is IdentityKind.X and i.display]
    return identities + extra
