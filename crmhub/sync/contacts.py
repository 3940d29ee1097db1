"""Which CRM record is a person's: an existing link, else the mirror.

Matching reads only the local mirror (no API call). When several records of
one CRM match, the person is linked to all of them, the oldest is written to,
and the conflict is flagged: merging them is an admin's decision, never
crmhub's. A first link also re-points what was written before it (backfill).
Persons are resolved a batch at a time: a few IN (...) queries for the lot.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
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
    """The person's record in `crm`, linking it on first match; None when unknown there (see `contacts_for`)."""
    return contacts_for(session, [person_id], crm, now=now, blocklist=blocklist, on_linked=on_linked)[person_id]


def contacts_for(session: Session, person_ids: Collection[int], crm: str, *, now: datetime,
                 blocklist: Blocklist = Blocklist(), on_linked: Callable[[int, str], None] | None = None
                 ) -> dict[int, ContactMatch | None]:
    """Each person's record in `crm`, linking mirror matches on first sight; None when unknown there.

    Every mirrored record holding one of a person's usable identities is
    linked (a record linked already, to anyone, stays as it is; one matching
    two persons here goes to the first given), and `on_linked` is called for
    each person given a new link (it flags several records and re-points
    earlier writes). The primary is the person's first link (`graph.links_of`).
    Blocked (shared) identities never match: they would put one caller's
    history on whichever customer happens to hold the switchboard number.
    """
    persons = list(dict.fromkeys(person_ids))
    usable = {person: matchable(blocklist.usable(held))
              for person, held in graph.identities_of_persons(session, persons).items()}
    links = graph.links_of_persons(session, persons, crm)
    matches = graph.mirror_matches_of(session, crm, usable)
    linked = {person: {link.record_id for link in held} for person, held in links.items()}
    new = [(person, object_type, record) for person in persons
           for object_type, record in matches[person] if record not in linked[person]]
    added = graph.add_links(session, crm, new, now=now)
    if added:
        relinked = [person for person in persons if person in added]
        if on_linked is not None:
            for person in relinked:
                on_linked(person, crm)
        links.update(graph.links_of_persons(session, relinked, crm))  # the primary may have changed
    return {person: ContactMatch(held[0].record_id, held[0].object_type, held[0].fields) if held else None
            for person, held in links.items()}


def matchable(identities: list[Identity]) -> list[Identity]:
    """Identities as the mirror indexes them: an X account also by its handle."""
    extra = [Identity(IdentityKind.X_HANDLE, i.display) for i in identities
             if i.kind is IdentityKind.X and i.display]
    return identities + extra
