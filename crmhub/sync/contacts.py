"""Which CRM record is a person's: an existing link, else the mirror.

Matching reads only the local mirror (no API call). When several records of
one CRM match, the person is linked to all of them, the oldest is written to,
and the conflict is flagged: merging them is an admin's decision, never
crmhub's. A first link also re-points what was written before it (backfill).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
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
                blocklist: Blocklist = Blocklist(), on_linked: Callable[[Sequence[int], str], None] | None = None
                ) -> ContactMatch | None:
    """The person's record in `crm`, linking it on first match; None when unknown there (`contacts_for` of one)."""
    return contacts_for(session, [person_id], crm, now=now, blocklist=blocklist, on_linked=on_linked)[person_id]


def contacts_for(session: Session, person_ids: Collection[int], crm: str, *, now: datetime,
                 blocklist: Blocklist = Blocklist(), on_linked: Callable[[Sequence[int], str], None] | None = None,
                 identities: Mapping[int, Sequence[Identity]] | None = None) -> dict[int, ContactMatch | None]:
    """Each person's record in `crm`, linking records on first match; None where unknown there.

    A handful of queries for the whole batch, however many persons. Blocked
    (shared) identities never match: they would put one caller's history on
    whichever customer happens to hold the switchboard number. A record
    already linked (to whichever person) keeps its link. `on_linked` runs once
    with the persons who gained a link (it flags several records and re-points
    earlier writes), and their primary is read again afterwards. `identities`: the persons' identities
    (`graph.identities_of_many`) when the caller read them already, for several CRMs or for its own use.
    """
    persons = sorted(set(person_ids))
    if identities is None:
        identities = graph.identities_of_many(session, persons)
    links = graph.links_of_many(session, persons, crm)
    wanted = {person: matchable(blocklist.usable(list(identities.get(person, ())))) for person in persons}
    holders: dict[tuple[str, str], list[int]] = {}
    for person, mine in wanted.items():
        for identity in mine:
            holders.setdefault((identity.kind.value, identity.value), []).append(person)
    entries = graph.mirror_entries(session, crm, [i for mine in wanted.values() for i in mine])
    taken = set(graph.linked_persons(session, crm, {entry.record_id for entry in entries}))
    new_links: list[tuple[int, str, str]] = []
    for entry in entries:  # oldest record first
        if entry.record_id in taken:
            continue
        taken.add(entry.record_id)  # one record, one person: the first whose identity it holds
        for person in holders.get((entry.kind, entry.value), [])[:1]:
            new_links.append((person, entry.object_type, entry.record_id))
    gained = sorted(graph.add_links(session, crm, new_links, now=now)) if new_links else []
    if gained:
        if on_linked is not None:  # flags several records, re-points earlier writes
            on_linked(gained, crm)
        links.update(graph.links_of_many(session, gained, crm))  # the primary may have changed
    primaries = {person: found[0] for person, found in links.items() if found}
    fields = graph.mirror_fields(session, crm, {link.record_id for link in primaries.values()})
    return {person: (ContactMatch(primaries[person].record_id, primaries[person].object_type,
                                  fields.get(primaries[person].record_id, {})) if person in primaries else None)
            for person in persons}


def matchable(identities: list[Identity]) -> list[Identity]:
    """Identities as the mirror indexes them: an X account also by its handle."""
    extra = [Identity(IdentityKind.X_HANDLE, i.display) for i in identities
             if i.kind is IdentityKind.X and i.display]
    return identities + extra
