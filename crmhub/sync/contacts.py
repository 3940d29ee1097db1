"""Which CRM record is a person's: an existing link, else the mirror.

Matching reads only the local mirror (no API call). When several records of
one CRM match, the oldest wins and the person is linked to it; merging them
is an admin's decision, never crmhub's.
"""

from __future__ import annotations

from collections.abc import Mapping
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
                blocklist: Blocklist = Blocklist()) -> ContactMatch | None:
    """The person's record in `crm`, linking it on first match; None when unknown there.

    Blocked (shared) identities never match: they would put one caller's
    history on whichever customer happens to hold the switchboard number.
    """
    link = graph.link_of(session, person_id, crm)
    if link is not None:
        mirrored = graph.mirror_record(session, crm, link.record_id)
        return ContactMatch(link.record_id, link.object_type, mirrored.fields if mirrored else {})
    usable = blocklist.usable(graph.identities_of(session, person_id))
    matches = graph.mirror_matches(session, crm, matchable(usable))
    if not matches:
        return None
    oldest = matches[0]
    graph.add_link(session, person_id, crm, oldest.object_type, oldest.record_id, now=now)
    return ContactMatch(oldest.record_id, oldest.object_type, oldest.fields)


def matchable(identities: list[Identity]) -> list[Identity]:
    """Identities as the mirror indexes them: an X account also by its handle."""
    extra = [Identity(IdentityKind.X_HANDLE, i.display) for i in identities
             if i.kind is IdentityKind.X and i.display]
    return identities + extra
