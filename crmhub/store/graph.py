"""The identity graph (persons and their identities), CRM links and the contact mirror.

The mirror is a local, incrementally refreshed copy of each CRM's contacts,
indexed by normalised identity, so matching a message to a contact costs no
API call however messy the CRM's phone formats are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from crmhub.model import Identity, IdentityKind, MirrorRecord
from crmhub.store.ledger import upsert
from crmhub.store.schema import (ConflictRow, CrmLinkRow, IdentityRow, LedgerRow, MirrorIdentityRow, MirrorRow,
                                 PersonRow)


def person_for(session: Session, identity: Identity, *, now: datetime) -> int:
    """The person holding `identity`, created on first sight."""
    row = session.scalar(select(IdentityRow).where(IdentityRow.kind == identity.kind.value,
                                                   IdentityRow.value == identity.value))
    if row is not None:
        if identity.display and not row.display:
            row.display = identity.display
        return row.person_id
    person = PersonRow(created_at=now)
    session.add(person)
    session.flush()
    session.add(IdentityRow(kind=identity.kind.value, value=identity.value, display=identity.display,
                            person_id=person.id))
    session.flush()
    return person.id


def holder_of(session: Session, identity: Identity) -> int | None:
    """The person holding `identity`, if any."""
    return session.scalar(select(IdentityRow.person_id).where(IdentityRow.kind == identity.kind.value,
                                                              IdentityRow.value == identity.value))


def add_identity(session: Session, person_id: int, identity: Identity) -> None:
    """Give an identity nobody holds yet to `person_id`."""
    session.add(IdentityRow(kind=identity.kind.value, value=identity.value, display=identity.display,
                            person_id=person_id))
    session.flush()


def count_of_kind(session: Session, person_id: int, kind: IdentityKind) -> int:
    return session.scalar(select(func.count()).select_from(IdentityRow)
                          .where(IdentityRow.person_id == person_id, IdentityRow.kind == kind.value)) or 0


def merge_persons(session: Session, keep: int, gone: int) -> None:
    """Move everything of person `gone` onto `keep`: identities, CRM links, interactions, conflicts."""
    for table in (IdentityRow, CrmLinkRow, LedgerRow):
        session.execute(update(table).where(table.person_id == gone).values(person_id=keep))
    for conflict in session.scalars(select(ConflictRow).where(ConflictRow.person_id == gone)):
        session.delete(conflict)  # re-detected for the joined person by the caller
    gone_row = session.get(PersonRow, gone)
    if gone_row is not None:
        gone_row.merged_into = keep
    session.flush()


def identities_of(session: Session, person_id: int) -> list[Identity]:
    rows = session.scalars(select(IdentityRow).where(IdentityRow.person_id == person_id).order_by(IdentityRow.id))
    return [Identity(IdentityKind(r.kind), r.value, r.display) for r in rows]


# ---- CRM links ---------------------------------------------------------------
def link_of(session: Session, person_id: int, crm: str) -> CrmLinkRow | None:
    """The person's record in `crm` that crmhub writes to: the primary of `links_of`."""
    links = links_of(session, person_id, crm)
    return links[0] if links else None


def links_of(session: Session, person_id: int, crm: str) -> list[CrmLinkRow]:
    """The person's records in `crm`, primary first: an admin's pick, else the oldest record.

    "Oldest" is the CRM's own creation time where the mirror knows it, else when crmhub linked it.
    """
    created = func.coalesce(MirrorRow.created_at, CrmLinkRow.created_at)
    query = (select(CrmLinkRow)
             .outerjoin(MirrorRow, (MirrorRow.crm == CrmLinkRow.crm) & (MirrorRow.record_id == CrmLinkRow.record_id))
             .where(CrmLinkRow.person_id == person_id, CrmLinkRow.crm == crm)
             .order_by(CrmLinkRow.preferred.desc(), created, CrmLinkRow.id))
    return list(session.scalars(query))


def add_link(session: Session, person_id: int, crm: str, object_type: str, record_id: str,
             *, now: datetime) -> CrmLinkRow:
    """Link a CRM record to the person; a record linked already keeps its link (to whichever person)."""
    return upsert(session, CrmLinkRow, {"person_id": person_id, "crm": crm, "object_type": object_type,
                                        "record_id": record_id, "created_at": now}, ("crm", "record_id"),
                  update=False)


# ---- contact mirror ----------------------------------------------------------
def upsert_mirror(session: Session, records: Iterable[MirrorRecord]) -> int:
    """Write refreshed contacts into the mirror (deleted ones leave it)."""
    count = 0
    for record in records:
        row = session.scalar(select(MirrorRow).where(MirrorRow.crm == record.crm,
                                                     MirrorRow.record_id == record.record_id))
        if record.deleted:
            if row is not None:
                session.delete(row)
            continue
        if row is None:
            row = MirrorRow(crm=record.crm, object_type=record.object_type, record_id=record.record_id,
                            fields=dict(record.fields), created_at=record.created_at,
                            modified_at=record.modified_at)
            session.add(row)
            session.flush()
        else:
            row.fields, row.modified_at = dict(record.fields), record.modified_at
            session.execute(delete(MirrorIdentityRow).where(MirrorIdentityRow.mirror_id == row.id))
        for identity in set(record.identities):
            session.add(MirrorIdentityRow(mirror_id=row.id, crm=record.crm, kind=identity.kind.value,
                                          value=identity.value))
        count += 1
    session.flush()
    return count


def mirror_matches(session: Session, crm: str, identities: Sequence[Identity]) -> list[MirrorRow]:
    """Mirrored records of `crm` holding any of `identities`, oldest first."""
    return _mirror_holding(session, [crm], identities, order=(MirrorRow.created_at, MirrorRow.id))


def mirror_holding(session: Session, crms: Sequence[str], identities: Sequence[Identity]) -> list[MirrorRow]:
    """Mirrored records of any of `crms` holding any of `identities`."""
    return _mirror_holding(session, crms, identities, order=(MirrorRow.id,))


def _mirror_holding(session: Session, crms: Sequence[str], identities: Sequence[Identity],
                    order: Sequence[Any]) -> list[MirrorRow]:
    """Records of `crms` holding any of `identities`, in `order`, each once.

    Every column of `ix_mirror_identities_lookup` (crm, kind, value) is bound
    by an IN list, so the lookup is a few index probes; a row-value IN of
    (kind, value) pairs is none on SQLite, which then read every mirrored
    record. The IN lists admit pairs nobody asked for (one identity's kind
    with another's value), dropped here.
    """
    wanted = {(i.kind.value, i.value) for i in identities}
    if not wanted or not crms:
        return []
    query = (select(MirrorRow, MirrorIdentityRow.kind, MirrorIdentityRow.value)
             .join(MirrorIdentityRow, MirrorIdentityRow.mirror_id == MirrorRow.id)
             .where(MirrorIdentityRow.crm.in_(sorted(set(crms))),
                    MirrorIdentityRow.kind.in_(sorted({k for k, _ in wanted})),
                    MirrorIdentityRow.value.in_(sorted({v for _, v in wanted})))
             .order_by(*order))
    found = {row.id: row for row, kind, value in session.execute(query) if (kind, value) in wanted}
    return list(found.values())  # a record may hold several


def mirror_identities(session: Session, mirror_id: int) -> list[Identity]:
    rows = session.execute(select(MirrorIdentityRow.kind, MirrorIdentityRow.value)
                           .where(MirrorIdentityRow.mirror_id == mirror_id).order_by(MirrorIdentityRow.id))
    return [Identity(IdentityKind(kind), value) for kind, value in rows]


def known_values(session: Session, kind: IdentityKind, values: Sequence[str], crms: Sequence[str]) -> set[str]:
    """Which of `values` crmhub knows as identities of `kind`, in the graph or the mirror of one of `crms`."""
    if not values:
        return set()
    graph = select(IdentityRow.value).where(IdentityRow.kind == kind.value, IdentityRow.value.in_(values))
    mirror = select(MirrorIdentityRow.value).where(MirrorIdentityRow.crm.in_(sorted(set(crms))),
                                                   MirrorIdentityRow.kind == kind.value,
                                                   MirrorIdentityRow.value.in_(values))
    return set(session.scalars(graph)) | set(session.scalars(mirror))


def mirror_record(session: Session, crm: str, record_id: str) -> MirrorRow | None:
    return session.scalar(select(MirrorRow).where(MirrorRow.crm == crm, MirrorRow.record_id == record_id))
